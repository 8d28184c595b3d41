#include "bantay/server/routes.h"

#include <array>

namespace bantay::server {
namespace {

using enum Role;
constexpr unsigned kPlatformBit = RoleBit(kPlatform);
constexpr unsigned kLabBit = RoleBit(kLab);
constexpr unsigned kOperatorBit = RoleBit(kOperator);
constexpr unsigned kAuditorBit = RoleBit(kAuditor);

// Order matters only for readability; the router matches by segments.
const std::array<RouteSpec, 24> kRoutes = {{
    {RouteId::kMatch, "POST", "/v1/match", kPlatformBit | kLabBit},
    {RouteId::kMatchBatch, "POST", "/v1/match/batch", kPlatformBit | kLabBit},
    {RouteId::kIndex, "GET", "/v1/index", kPlatformBit | kLabBit | kOperatorBit | kAuditorBit},
    {RouteId::kIndexProof, "GET", "/v1/index/proof/{id}", kAuditorBit | kOperatorBit},
    {RouteId::kAudit, "GET", "/v1/audit", kAuditorBit | kOperatorBit},
    {RouteId::kListsGet, "GET", "/v1/lists", kOperatorBit | kAuditorBit},
    {RouteId::kListsPost, "POST", "/v1/lists", kOperatorBit},
    {RouteId::kListGet, "GET", "/v1/lists/{list}", kOperatorBit | kAuditorBit},
    {RouteId::kListPatch, "PATCH", "/v1/lists/{list}", kOperatorBit},
    {RouteId::kEntriesGet, "GET", "/v1/lists/{list}/entries", kOperatorBit | kAuditorBit},
    {RouteId::kEntriesPost, "POST", "/v1/lists/{list}/entries", kOperatorBit},
    {RouteId::kEntryGet, "GET", "/v1/lists/{list}/entries/{id}", kOperatorBit | kAuditorBit},
    {RouteId::kEntryPatch, "PATCH", "/v1/lists/{list}/entries/{id}", kOperatorBit},
    {RouteId::kEntryDelete, "DELETE", "/v1/lists/{list}/entries/{id}", kOperatorBit},
    {RouteId::kStreamsGet, "GET", "/v1/streams", kPlatformBit | kLabBit},
    {RouteId::kStreamsPost, "POST", "/v1/streams", kPlatformBit | kLabBit},
    {RouteId::kStreamGet, "GET", "/v1/streams/{id}", kPlatformBit | kLabBit},
    {RouteId::kStreamDelete, "DELETE", "/v1/streams/{id}", kPlatformBit | kLabBit},
    {RouteId::kStreamFrames, "POST", "/v1/streams/{id}/frames", kPlatformBit | kLabBit},
    // A WebSocket upgrade (server.cc); a plain GET is answered 426.
    {RouteId::kStreamSocket, "GET", "/v1/streams/{id}/ws", kPlatformBit | kLabBit},
    {RouteId::kHealthz, "GET", "/healthz", 0},
    {RouteId::kReadyz, "GET", "/readyz", 0},
    // Roles apply unless metrics_public is set.
    {RouteId::kMetrics, "GET", "/metrics", kOperatorBit | kAuditorBit},
    {RouteId::kOpenApi, "GET", "/openapi.json", 0},
}};

}  // namespace

std::span<const RouteSpec> ApiRoutes() { return kRoutes; }

}  // namespace bantay::server
