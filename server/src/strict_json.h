// ParseJson: JSON text from a client (or a file the server reads back) into
// a boost::json::value, refusing an object that names a member twice.
//
// RFC 8259 leaves the meaning of such an object open, and Boost.JSON keeps
// the last value: a filter or logger in front of the server that reads the
// first would see another request than the one answered. Names are compared
// after their escapes are decoded ("a" and "\u0061" are one name), at every
// depth.
//
// Thread safety: a pure function.
#ifndef BANTAY_SERVER_STRICT_JSON_H_
#define BANTAY_SERVER_STRICT_JSON_H_

#include <string_view>

#include <boost/json/value.hpp>

#include "bantay/models/status.h"

namespace bantay::server {

// kInvalidArgument "<what> is not JSON: <parser's message>" or "<what> names
// the member \"<name>\" twice".
Result<boost::json::value> ParseJson(std::string_view text, std::string_view what);

}  // namespace bantay::server

#endif  // BANTAY_SERVER_STRICT_JSON_H_
