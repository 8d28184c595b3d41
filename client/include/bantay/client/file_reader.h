// Reading evidence and input files without changing them: read-only,
// without updating the access time where the kernel allows it, whole file
// into memory (never a temporary copy), with a size limit.
#ifndef BANTAY_CLIENT_FILE_READER_H_
#define BANTAY_CLIENT_FILE_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "bantay/models/status.h"

namespace bantay::client {

// 1 GiB: files larger than this are refused with kTooLarge.
inline constexpr int64_t kDefaultMaxFileBytes = int64_t{1} << 30;

// Reads the whole of a regular file. Errors: kNotFound, kPermissionDenied,
// kInvalidArgument (a directory or other non-regular file), kTooLarge, kIo.
Result<std::vector<uint8_t>> ReadWholeFile(
    const std::string& path, int64_t max_bytes = kDefaultMaxFileBytes);

// Reads up to n bytes from the start of a file (to tell its type).
Result<std::vector<uint8_t>> ReadFileHead(const std::string& path, size_t n);

// As ReadWholeFile and ReadFileHead, of a file the caller opened (for one
// opened relative to a directory, or checked after opening): read from its
// start, whatever its offset; the descriptor stays the caller's.
Result<std::vector<uint8_t>> ReadWholeOpenFile(
    int fd, int64_t max_bytes = kDefaultMaxFileBytes);
Result<std::vector<uint8_t>> ReadOpenFileHead(int fd, size_t n);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_FILE_READER_H_
