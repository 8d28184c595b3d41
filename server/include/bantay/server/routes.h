// The routes of API v1: one table, used by the router and checked against
// the OpenAPI document (server/openapi.json) by a test.
#ifndef BANTAY_SERVER_ROUTES_H_
#define BANTAY_SERVER_ROUTES_H_

#include <span>
#include <string_view>

#include "bantay/server/config.h"

namespace bantay::server {

enum class RouteId {
  kMatch,
  kMatchBatch,
  kIndex,
  kIndexProof,
  kAudit,
  kListsGet,
  kListsPost,
  kListGet,
  kListPatch,
  kEntriesGet,
  kEntriesPost,
  kEntryGet,
  kEntryPatch,
  kEntryDelete,
  kStreamsGet,
  kStreamsPost,
  kStreamGet,
  kStreamDelete,
  kStreamFrames,
  kStreamSocket,
  kHealthz,
  kReadyz,
  kMetrics,
  kOpenApi,
};

constexpr unsigned RoleBit(Role role) { return 1u << static_cast<unsigned>(role); }

struct RouteSpec {
  RouteId id;
  std::string_view method;  // "GET", "POST", "PATCH", "DELETE"
  // OpenAPI path template: literal segments and {name} parameters.
  std::string_view path;
  // Roles that may call it (RoleBit of each); 0: no key needed.
  unsigned roles;
  bool Allows(Role role) const { return roles & RoleBit(role); }
};

std::span<const RouteSpec> ApiRoutes();

// The OpenAPI 3 document (JSON text), compiled in from server/openapi.json.
std::string_view OpenApiDocument();

}  // namespace bantay::server

#endif  // BANTAY_SERVER_ROUTES_H_
