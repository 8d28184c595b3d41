#include "strict_json.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>

namespace bantay::server {

namespace {

using boost::system::error_code;
using boost::json::string_view;

// A basic_parser handler that keeps nothing but the names of the objects
// still open; each object's names are sorted and compared when it closes.
class RepeatedNameFinder {
 public:
  static constexpr size_t max_array_size = static_cast<size_t>(-1);
  static constexpr size_t max_object_size = static_cast<size_t>(-1);
  static constexpr size_t max_string_size = static_cast<size_t>(-1);
  static constexpr size_t max_key_size = static_cast<size_t>(-1);

  // The name an object repeats (set when the parse stopped for it).
  const std::optional<std::string>& repeated() const { return repeated_; }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_array_begin(error_code&) { return true; }
  bool on_array_end(size_t, error_code&) { return true; }
  bool on_object_begin(error_code&) {
    open_.emplace_back();
    return true;
  }
  bool on_object_end(size_t, error_code& ec) {
    std::vector<std::string>& names = open_.back();
    std::sort(names.begin(), names.end());
    const auto same = std::adjacent_find(names.begin(), names.end());
    if (same != names.end()) {
      repeated_ = std::move(*same);
      ec = make_error_code(boost::system::errc::invalid_argument);
      return false;
    }
    open_.pop_back();
    return true;
  }
  bool on_string_part(string_view, size_t, error_code&) { return true; }
  bool on_string(string_view, size_t, error_code&) { return true; }
  bool on_key_part(string_view part, size_t, error_code&) {
    name_.append(part.data(), part.size());
    return true;
  }
  bool on_key(string_view part, size_t, error_code&) {
    name_.append(part.data(), part.size());
    open_.back().push_back(std::move(name_));
    name_.clear();
    return true;
  }
  bool on_number_part(string_view, error_code&) { return true; }
  bool on_int64(int64_t, string_view, error_code&) { return true; }
  bool on_uint64(uint64_t, string_view, error_code&) { return true; }
  bool on_double(double, string_view, error_code&) { return true; }
  bool on_bool(bool, error_code&) { return true; }
  bool on_null(error_code&) { return true; }
  bool on_comment_part(string_view, error_code&) { return true; }
  bool on_comment(string_view, error_code&) { return true; }

 private:
  std::vector<std::vector<std::string>> open_;  // names of each open object
  std::string name_;                            // the name being read
  std::optional<std::string> repeated_;
};

}  // namespace

Result<boost::json::value> ParseJson(std::string_view text, std::string_view what) {
  error_code ec;
  boost::json::value value = boost::json::parse(text, ec);
  if (ec) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(what) + " is not JSON: " + ec.message());
  }
  // The text is JSON (with boost::json::parse's default options, which the
  // finder's parser shares): read again for names only.
  boost::json::basic_parser<RepeatedNameFinder> finder(boost::json::parse_options{});
  finder.write_some(false, text.data(), text.size(), ec);
  if (const std::optional<std::string>& name = finder.handler().repeated()) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(what) + " names the member \"" + *name + "\" twice");
  }
  if (ec) {
    return Error(ErrorCode::kInternal, std::string(what) + " was JSON to one parser only: " +
                                           ec.message());
  }
  return value;
}

}  // namespace bantay::server
