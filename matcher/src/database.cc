#include "database.h"

#include <cctype>
#include <string>

namespace bantay::matcher::db {

Result<std::unique_ptr<Connection>> Connection::Open(std::string_view url,
                                                     bool create) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (url.starts_with(kSqlite)) {
    std::string path(url.substr(kSqlite.size()));
    if (path.empty()) {
      return Error(ErrorCode::kInvalidArgument, "sqlite: URL without a path");
    }
    return internal::OpenSqlite(path, create);
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return internal::OpenPostgres(std::string(url));
  }
  // The URL is not echoed: it may carry a password.
  return Error(ErrorCode::kInvalidArgument,
               "database URL must start with sqlite:, postgresql:// or "
               "postgres://");
}

namespace internal {
namespace {

// "$" may continue an identifier in both dialects ("a$1").
bool IsIdentifierChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
         static_cast<unsigned char>(c) >= 0x80;
}

}  // namespace

std::string RewriteParamsForSqlite(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  size_t i = 0;
  const size_t n = sql.size();
  // Copies sql[i..] up to and including the closing `quote` (a doubled quote
  // is an escaped one and simply closes and reopens).
  auto copy_quoted = [&](char quote) {
    out += sql[i++];
    while (i < n) {
      char c = sql[i++];
      out += c;
      if (c == quote) return;
    }
  };
  while (i < n) {
    char c = sql[i];
    if (c == '\'' || c == '"' || c == '`') {
      copy_quoted(c);
    } else if (c == '[') {
      copy_quoted(']');
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      size_t end = sql.find('\n', i);
      end = end == std::string_view::npos ? n : end;
      out.append(sql.substr(i, end - i));
      i = end;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      size_t end = sql.find("*/", i + 2);
      end = end == std::string_view::npos ? n : end + 2;
      out.append(sql.substr(i, end - i));
      i = end;
    } else if (c == '$' && i + 1 < n &&
               std::isdigit(static_cast<unsigned char>(sql[i + 1])) &&
               !(i > 0 && IsIdentifierChar(sql[i - 1]))) {
      out += '?';
      ++i;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

}  // namespace internal

}  // namespace bantay::matcher::db
