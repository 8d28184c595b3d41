# Writes OUTPUT, a C++ file defining bantay::server::OpenApiDocument() as the
# text of INPUT.
file(READ ${INPUT} document)
set(delimiter "bantay_openapi")
string(FIND "${document}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter")
endif()
file(WRITE ${OUTPUT}
  "// Generated from server/openapi.json by server/embed_openapi.cmake.\n"
  "#include \"bantay/server/routes.h\"\n"
  "namespace bantay::server {\n"
  "std::string_view OpenApiDocument() {\n"
  "  static constexpr std::string_view kDocument = R\"${delimiter}(${document})${delimiter}\";\n"
  "  return kDocument;\n"
  "}\n"
  "}  // namespace bantay::server\n")
