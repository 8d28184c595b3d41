// server/openapi.json (as compiled into the binary) against the route table:
// the document must describe exactly the routes the server routes, with the
// same roles and security. Each check returns the problems it finds by name,
// so that a failure says what to fix and the tests can show that each check
// catches a broken document.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <iterator>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api.h"
#include "bantay/server/config.h"
#include "bantay/server/routes.h"

namespace bantay::server {
namespace {

namespace json = boost::json;
using Problems = std::vector<std::string>;

constexpr std::string_view kMethods[] = {"get",     "put",  "post",  "delete",
                                         "options", "head", "patch", "trace"};
constexpr Role kRoles[] = {Role::kPlatform, Role::kLab, Role::kOperator,
                           Role::kAuditor};

// The codes of server/README.md's error table, and `invalid_entries` (the
// 422 of an entry import that applied nothing).
const std::set<std::string> kErrorCodes = {
    "invalid_argument", "unauthenticated",    "forbidden",
    "not_found",        "method_not_allowed",
    "too_large",        "unsupported_format", "corrupt_data",
    "invalid_entries",  "rate_limited",       "header_too_large",
    "internal",         "unavailable",
    // The stream routes'.
    "too_many_streams", "out_of_order",       "upgrade_required"};

std::string Upper(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return out;
}

std::string Join(const std::set<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return "[" + out + "]";
}

std::string RouteName(const RouteSpec& spec) {
  return std::string(spec.method) + " " + std::string(spec.path);
}

const RouteSpec* FindRoute(std::string_view name) {
  for (const RouteSpec& spec : ApiRoutes()) {
    if (RouteName(spec) == name) return &spec;
  }
  return nullptr;
}

std::set<std::string> RoleNames(unsigned bits) {
  std::set<std::string> names;
  for (Role role : kRoles) {
    if (bits & RoleBit(role)) names.emplace(RoleName(role));
  }
  return names;
}

const json::object* Member(const json::object* object, std::string_view key) {
  if (object == nullptr) return nullptr;
  const json::value* value = object->if_contains(key);
  return value != nullptr && value->is_object() ? &value->as_object() : nullptr;
}

// A local JSON pointer ("#/components/schemas/Error"), RFC 6901 escapes
// included; nullptr when it does not lead anywhere.
const json::value* ResolvePointer(const json::value& root,
                                  std::string_view ref) {
  if (!ref.starts_with("#")) return nullptr;
  ref.remove_prefix(1);
  const json::value* at = &root;
  while (!ref.empty()) {
    if (ref.front() != '/') return nullptr;
    ref.remove_prefix(1);
    const size_t end = std::min(ref.find('/'), ref.size());
    std::string token;
    for (size_t i = 0; i < end; ++i) {
      if (ref[i] == '~' && i + 1 < end &&
          (ref[i + 1] == '0' || ref[i + 1] == '1')) {
        token += ref[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        token += ref[i];
      }
    }
    ref.remove_prefix(end);
    if (at->is_object()) {
      at = at->as_object().if_contains(token);
    } else if (at->is_array()) {
      size_t index = 0;
      for (char c : token) {
        if (c < '0' || c > '9') return nullptr;
        index = index * 10 + static_cast<size_t>(c - '0');
      }
      if (token.empty() || index >= at->as_array().size()) return nullptr;
      at = &at->as_array()[index];
    } else {
      return nullptr;
    }
    if (at == nullptr) return nullptr;
  }
  return at;
}

// An object, or the object its $ref leads to (one step).
const json::object* Deref(const json::value& root, const json::value& value) {
  if (!value.is_object()) return nullptr;
  const json::value* ref = value.as_object().if_contains("$ref");
  if (ref == nullptr) return &value.as_object();
  if (!ref->is_string()) return nullptr;
  const json::value* target = ResolvePointer(root, ref->as_string());
  return target != nullptr && target->is_object() ? &target->as_object()
                                                  : nullptr;
}

struct Operation {
  std::string name;  // "POST /v1/match"
  const json::object* body;
};

std::vector<Operation> Operations(const json::value& doc) {
  std::vector<Operation> out;
  const json::object* paths = Member(doc.if_object(), "paths");
  if (paths == nullptr) return out;
  for (const auto& item : *paths) {
    if (!item.value().is_object()) continue;
    for (const auto& member : item.value().as_object()) {
      if (std::find(std::begin(kMethods), std::end(kMethods), member.key()) ==
              std::end(kMethods) ||
          !member.value().is_object()) {
        continue;
      }
      out.push_back({Upper(member.key()) + " " + std::string(item.key()),
                     &member.value().as_object()});
    }
  }
  return out;
}

// Whether the operation needs a key: the route table says so for routed
// operations; the others (reported by UnroutedOperations) by their roles.
bool Keyed(const Operation& op) {
  if (const RouteSpec* spec = FindRoute(op.name)) return spec->roles != 0;
  const json::value* roles = op.body->if_contains("x-bantay-roles");
  return roles != nullptr && roles->is_array() && !roles->as_array().empty();
}

Problems MissingOperations(const json::value& doc) {
  std::set<std::string> documented;
  for (const Operation& op : Operations(doc)) documented.insert(op.name);
  Problems missing;
  for (const RouteSpec& spec : ApiRoutes()) {
    if (!documented.contains(RouteName(spec)))
      missing.push_back(RouteName(spec));
  }
  return missing;
}

Problems UnroutedOperations(const json::value& doc) {
  Problems unrouted;
  for (const Operation& op : Operations(doc)) {
    if (FindRoute(op.name) == nullptr) unrouted.push_back(op.name);
  }
  return unrouted;
}

Problems RoleProblems(const json::value& doc) {
  Problems problems;
  for (const Operation& op : Operations(doc)) {
    const RouteSpec* spec = FindRoute(op.name);
    if (spec == nullptr) continue;
    const json::value* roles = op.body->if_contains("x-bantay-roles");
    if (roles == nullptr || !roles->is_array()) {
      problems.push_back(op.name + ": no x-bantay-roles array");
      continue;
    }
    std::set<std::string> documented;
    bool distinct_strings = true;
    for (const json::value& role : roles->as_array()) {
      distinct_strings = distinct_strings && role.is_string() &&
                         documented.emplace(role.as_string()).second;
    }
    const std::set<std::string> expected = RoleNames(spec->roles);
    if (!distinct_strings) {
      problems.push_back(op.name + ": x-bantay-roles must be distinct strings");
    } else if (documented != expected) {
      problems.push_back(op.name + ": x-bantay-roles " + Join(documented) +
                         ", route table " + Join(expected));
    }
  }
  return problems;
}

Problems SecurityProblems(const json::value& doc) {
  Problems problems;
  const json::object* bearer =
      Member(Member(Member(doc.if_object(), "components"), "securitySchemes"),
             "bearer");
  auto has = [bearer](std::string_view key, std::string_view value) {
    const json::value* member = bearer ? bearer->if_contains(key) : nullptr;
    return member != nullptr && member->is_string() &&
           member->as_string() == value;
  };
  if (!has("type", "http") || !has("scheme", "bearer")) {
    problems.push_back(
        "components.securitySchemes.bearer is not {type: http, scheme: "
        "bearer}");
  }
  const json::value keyed =
      json::array{json::object{{"bearer", json::array()}}};
  const json::value open = json::array();
  for (const Operation& op : Operations(doc)) {
    const json::value* security = op.body->if_contains("security");
    const bool needs_key = Keyed(op);
    if (security == nullptr || *security != (needs_key ? keyed : open)) {
      problems.push_back(op.name + (needs_key
                                        ? ": security must be [{bearer: []}]"
                                        : ": security must be []"));
    }
  }
  return problems;
}

// A key as a JSON pointer token (RFC 6901).
std::string PointerToken(std::string_view key) {
  std::string token;
  for (char c : key) {
    if (c == '~') {
      token += "~0";
    } else if (c == '/') {
      token += "~1";
    } else {
      token += c;
    }
  }
  return token;
}

void CollectRefs(const json::value& root, const json::value& value,
                 const std::string& where, Problems* problems) {
  if (value.is_object()) {
    for (const auto& member : value.as_object()) {
      const std::string here = where + "/" + PointerToken(member.key());
      if (member.key() == "$ref") {
        if (!member.value().is_string() ||
            ResolvePointer(root, member.value().as_string()) == nullptr) {
          problems->push_back(here + ": " + json::serialize(member.value()));
        }
      } else {
        CollectRefs(root, member.value(), here, problems);
      }
    }
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.as_array().size(); ++i) {
      CollectRefs(root, value.as_array()[i], where + "/" + std::to_string(i),
                  problems);
    }
  }
}

Problems UnresolvedRefs(const json::value& doc) {
  Problems problems;
  CollectRefs(doc, doc, "#", &problems);
  return problems;
}

// Whether a response schema is the Error schema, or builds on it (allOf).
bool IsErrorSchema(const json::value& doc, const json::value* schema) {
  static const json::value kError =
      json::object{{"$ref", "#/components/schemas/Error"}};
  if (schema == nullptr) return false;
  if (*schema == kError) return true;
  const json::object* resolved = Deref(doc, *schema);
  const json::value* all_of =
      resolved ? resolved->if_contains("allOf") : nullptr;
  if (all_of == nullptr || !all_of->is_array()) return false;
  const json::array& parts = all_of->as_array();
  return std::find(parts.begin(), parts.end(), kError) != parts.end();
}

Problems ResponseProblems(const json::value& doc) {
  Problems problems;
  for (const Operation& op : Operations(doc)) {
    const json::object* responses = Member(op.body, "responses");
    if (responses == nullptr) {
      problems.push_back(op.name + ": no responses");
      continue;
    }
    bool success = false;
    for (const auto& member : *responses) {
      const std::string code(member.key());
      // 101: a WebSocket upgrade's success.
      success = success || (code.size() == 3 && code[0] == '2') || code == "101";
      const json::object* response = Deref(doc, member.value());
      if (response == nullptr) {
        problems.push_back(op.name + ": response " + code +
                           " is not an object");
        continue;
      }
      if ((code == "429" || code == "503") &&
          Member(Member(response, "headers"), "Retry-After") == nullptr) {
        problems.push_back(op.name + ": " + code +
                           " without a Retry-After header");
      }
      if (code[0] == '4' || code[0] == '5') {
        const json::object* json_content =
            Member(Member(response, "content"), "application/json");
        if (!IsErrorSchema(doc, json_content
                                    ? json_content->if_contains("schema")
                                    : nullptr)) {
          problems.push_back(op.name + ": " + code +
                             " does not answer with the Error schema");
        }
      }
    }
    if (!success) problems.push_back(op.name + ": no 2xx response");
    // What the connection answers for any request, whatever its route: a
    // malformed request, a body or a header over the limits.
    for (std::string_view code : {"400", "413", "431"}) {
      if (!responses->contains(code)) {
        problems.push_back(op.name + ": no " + std::string(code) + " response");
      }
    }
    if (Keyed(op)) {
      for (std::string_view code : {"401", "403", "429"}) {
        if (!responses->contains(code)) {
          problems.push_back(op.name + ": no " + std::string(code) +
                             " response");
        }
      }
    }
  }
  return problems;
}

class OpenApiTest : public testing::Test {
 protected:
  // Parsed once; tests that break it work on a copy.
  static const json::value& Document() {
    static const json::value document = [] {
      boost::system::error_code ec;
      json::value value = json::parse(OpenApiDocument(), ec);
      EXPECT_FALSE(ec) << "server/openapi.json is not JSON: " << ec.message();
      return value;
    }();
    return document;
  }
  static json::object& PathItem(json::value& doc, std::string_view path) {
    return doc.at("paths").as_object().at(path).as_object();
  }
};

TEST_F(OpenApiTest, IsOpenApi30WithInfoAndPaths) {
  const json::value& doc = Document();
  ASSERT_TRUE(doc.is_object());
  const json::value* version = doc.as_object().if_contains("openapi");
  ASSERT_NE(version, nullptr);
  ASSERT_TRUE(version->is_string());
  EXPECT_TRUE(version->as_string().starts_with("3.0.")) << version->as_string();
  const json::object* info = Member(doc.if_object(), "info");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->at("title"), "Bantay API");
  EXPECT_EQ(info->at("version"), "1");
  const json::object* paths = Member(doc.if_object(), "paths");
  ASSERT_NE(paths, nullptr);
  EXPECT_EQ(Operations(doc).size(), ApiRoutes().size());
  EXPECT_EQ(OpenApiDocument().find(")bantay_openapi\""),
            std::string_view::npos);
}

TEST_F(OpenApiTest, EveryRouteIsDocumented) {
  const Problems missing = MissingOperations(Document());
  EXPECT_TRUE(missing.empty()) << "routed but not in server/openapi.json: "
                               << testing::PrintToString(missing);
}

TEST_F(OpenApiTest, EveryDocumentedOperationIsRouted) {
  const Problems unrouted = UnroutedOperations(Document());
  EXPECT_TRUE(unrouted.empty())
      << "in server/openapi.json but not in ApiRoutes(): "
      << testing::PrintToString(unrouted);
}

TEST_F(OpenApiTest, RolesAreTheRouteTables) {
  const Problems problems = RoleProblems(Document());
  EXPECT_TRUE(problems.empty()) << testing::PrintToString(problems);
}

TEST_F(OpenApiTest, KeyedOperationsNeedBearerAndOthersNothing) {
  const Problems problems = SecurityProblems(Document());
  EXPECT_TRUE(problems.empty()) << testing::PrintToString(problems);
}

TEST_F(OpenApiTest, EveryRefResolves) {
  const Problems problems = UnresolvedRefs(Document());
  EXPECT_TRUE(problems.empty()) << testing::PrintToString(problems);
}

TEST_F(OpenApiTest, EveryOperationHasSuccessAndKeyErrors) {
  const Problems problems = ResponseProblems(Document());
  EXPECT_TRUE(problems.empty()) << testing::PrintToString(problems);
}

TEST_F(OpenApiTest, ErrorCodesAreTheContractsAndCoverTheServers) {
  const json::value& doc = Document();
  const json::object* error =
      Deref(doc, json::object{{"$ref", "#/components/schemas/Error"}});
  ASSERT_NE(error, nullptr);
  const json::object* properties = Member(error, "properties");
  ASSERT_NE(properties, nullptr);
  ASSERT_TRUE(properties->contains("error"));
  const json::object* detail = Deref(doc, properties->at("error"));
  ASSERT_NE(detail, nullptr);
  const json::object* code = Member(Member(detail, "properties"), "code");
  ASSERT_NE(code, nullptr);
  ASSERT_TRUE(code->contains("enum"));
  std::set<std::string> documented;
  for (const json::value& name : code->at("enum").as_array()) {
    documented.emplace(name.as_string());
  }
  EXPECT_EQ(documented, kErrorCodes);
  EXPECT_EQ(detail->at("required"), (json::array{"code", "message"}));

  for (ErrorCode error_code :
       {ErrorCode::kInvalidArgument, ErrorCode::kNotFound,
        ErrorCode::kUnsupportedFormat, ErrorCode::kTooLarge,
        ErrorCode::kCorruptData, ErrorCode::kIo, ErrorCode::kPermissionDenied,
        ErrorCode::kUnavailable, ErrorCode::kInternal}) {
    const std::string name(ErrorCodeOf(HttpStatusOf(error_code), error_code));
    EXPECT_TRUE(documented.contains(name))
        << name << " (" << ErrorCodeName(error_code) << ")";
  }
}

TEST_F(OpenApiTest, RetryAfterIsWholeSecondsAtLeastOne) {
  const json::value* header =
      ResolvePointer(Document(), "#/components/headers/RetryAfter");
  ASSERT_NE(header, nullptr);
  EXPECT_EQ(header->at("schema"),
            (json::object{{"type", "integer"}, {"minimum", 1}}));
}

// The checks themselves: each names what a broken document gets wrong.

TEST_F(OpenApiTest, MissingAndUnroutedOperationsAreNamed) {
  json::value doc = Document();
  PathItem(doc, "/v1/match/batch").erase("post");
  PathItem(doc, "/v1/lists/{list}").erase("patch");
  PathItem(doc, "/v1/audit")["delete"] = PathItem(doc, "/v1/audit").at("get");
  doc.at("paths").as_object()["/v1/videos"] =
      json::object{{"post", json::object()}};
  EXPECT_EQ(MissingOperations(doc),
            (Problems{"POST /v1/match/batch", "PATCH /v1/lists/{list}"}));
  EXPECT_EQ(UnroutedOperations(doc),
            (Problems{"DELETE /v1/audit", "POST /v1/videos"}));
}

TEST_F(OpenApiTest, WrongRolesAreNamed) {
  json::value doc = Document();
  PathItem(doc, "/v1/audit").at("get").as_object()["x-bantay-roles"] =
      json::array{"auditor"};
  PathItem(doc, "/v1/index").at("get").as_object()["x-bantay-roles"] =
      json::array{"platform", "platform", "lab", "operator", "auditor"};
  PathItem(doc, "/healthz").at("get").as_object().erase("x-bantay-roles");
  PathItem(doc, "/readyz").at("get").as_object()["x-bantay-roles"] =
      json::array{"operator"};
  EXPECT_EQ(
      RoleProblems(doc),
      (Problems{"GET /v1/index: x-bantay-roles must be distinct strings",
                "GET /v1/audit: x-bantay-roles [auditor], route table "
                "[auditor, operator]",
                "GET /healthz: no x-bantay-roles array",
                "GET /readyz: x-bantay-roles [operator], route table []"}));
}

TEST_F(OpenApiTest, WrongSecurityIsNamed) {
  json::value doc = Document();
  PathItem(doc, "/v1/match").at("post").as_object()["security"] = json::array();
  PathItem(doc, "/v1/lists").at("get").as_object().erase("security");
  PathItem(doc, "/healthz").at("get").as_object()["security"] =
      json::array{json::object{{"bearer", json::array()}}};
  EXPECT_EQ(SecurityProblems(doc),
            (Problems{"POST /v1/match: security must be [{bearer: []}]",
                      "GET /v1/lists: security must be [{bearer: []}]",
                      "GET /healthz: security must be []"}));
  doc.at("components")
      .at("securitySchemes")
      .at("bearer")
      .as_object()["scheme"] = "basic";
  EXPECT_EQ(
      SecurityProblems(doc).front(),
      "components.securitySchemes.bearer is not {type: http, scheme: bearer}");
}

TEST_F(OpenApiTest, UnresolvedRefsAreNamed) {
  json::value doc = Document();
  json::object& ok =
      PathItem(doc, "/healthz").at("get").at("responses").at("200").as_object();
  ok["content"].at("application/json").as_object()["schema"] =
      json::object{{"$ref", "#/components/schemas/Nothing"}};
  doc.at("components").as_object()["x-test"] =
      json::array{json::object{{"$ref", "#/paths/~1v1~1match/post"}},
                  json::object{{"$ref", "#/paths/~1v1~1match~0/post"}},
                  json::object{{"$ref", "#/tags/9"}}};
  EXPECT_EQ(
      UnresolvedRefs(doc),
      (Problems{"#/paths/~1healthz/get/responses/200/content/application~1json/"
                "schema/$ref: "
                "\"#/components/schemas/Nothing\"",
                "#/components/x-test/1/$ref: \"#/paths/~1v1~1match~0/post\"",
                "#/components/x-test/2/$ref: \"#/tags/9\""}));
}

TEST_F(OpenApiTest, MissingResponsesAreNamed) {
  json::value doc = Document();
  json::object& index =
      PathItem(doc, "/v1/index").at("get").at("responses").as_object();
  index.erase("200");
  index.erase("429");
  json::object& match =
      PathItem(doc, "/v1/match").at("post").at("responses").as_object();
  match["503"] = json::object{{"description", "busy"}};
  json::object& health = PathItem(doc, "/healthz").at("get").at("responses").as_object();
  health.erase("200");
  health.erase("413");
  EXPECT_EQ(
      ResponseProblems(doc),
      (Problems{"POST /v1/match: 503 without a Retry-After header",
                "POST /v1/match: 503 does not answer with the Error schema",
                "GET /v1/index: no 2xx response",
                "GET /v1/index: no 429 response",
                "GET /healthz: no 2xx response",
                "GET /healthz: no 413 response"}));
}

}  // namespace
}  // namespace bantay::server
