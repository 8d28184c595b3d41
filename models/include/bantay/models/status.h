// Error values shared by every Bantay module.
//
// Functions that can fail return Result<T> (or Status when there is no
// value). No exception crosses a module boundary: OpenCV, FAISS and OpenSSL
// failures are caught where they happen and turned into an Error. The code
// carries the meaning (and the HTTP status the server maps it to); the
// message is for humans and never contains image bytes or hash values of
// queries.
#ifndef BANTAY_MODELS_STATUS_H_
#define BANTAY_MODELS_STATUS_H_

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bantay {

enum class ErrorCode {
  kInvalidArgument,    // malformed input (bad hex, bad option)
  kNotFound,           // a file, list or entry that does not exist
  kUnsupportedFormat,  // bytes are not an image format Bantay decodes
  kTooLarge,           // a size or pixel-count limit was exceeded
  kCorruptData,        // a recognised format that does not decode
  kIo,                 // reading or writing failed
  kPermissionDenied,   // the caller may not do this
  kUnavailable,        // try again later (overload, shutting down)
  kInternal,           // a bug or an unexpected library failure
};

// Stable lower-case name of a code ("invalid_argument", ...), used in JSON.
std::string_view ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "<code name>: <message>"
  std::string ToString() const;

 private:
  ErrorCode code_;
  std::string message_;
};

// A value or an Error. Accessing value() of an error (or error() of a value)
// is a programming error, checked by assert in debug builds.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : data_(std::move(error)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return ok(); }

  const T& value() const& {
    assert(ok());
    return std::get<T>(data_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(data_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(data_));
  }
  const Error& error() const {
    assert(!ok());
    return std::get<Error>(data_);
  }

  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  std::variant<T, Error> data_;
};

// Success or an Error, for operations without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_{ErrorCode::kInternal, ""};
  bool ok_ = true;
};

}  // namespace bantay

#endif  // BANTAY_MODELS_STATUS_H_
