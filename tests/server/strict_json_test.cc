// ParseJson: JSON as boost::json::parse reads it, with repeated member
// names refused at every depth.
#include "strict_json.h"

#include <gtest/gtest.h>

#include <string>

#include <boost/json.hpp>

namespace bantay::server {
namespace {

namespace json = boost::json;

TEST(StrictJsonTest, JsonWithoutRepeatedNamesIsReadAsItIs) {
  // The same name in different objects, and at different depths, is no
  // repetition.
  const std::string text =
      R"({"a":{"a":1,"b":[{"a":1},{"a":2}]},"b":"a","c":[[{"c":null}]],"d":{}})";
  Result<json::value> value = ParseJson(text, "the body");
  ASSERT_TRUE(value.ok()) << value.error().ToString();
  EXPECT_EQ(*value, json::parse(text));
  Result<json::value> scalar = ParseJson(" 7 ", "the body");
  ASSERT_TRUE(scalar.ok());
  EXPECT_EQ(*scalar, json::value(7));
}

TEST(StrictJsonTest, ARepeatedNameIsRefusedWhereverItIs) {
  const struct {
    const char* text;
    const char* name;
  } cases[] = {
      {R"({"pdq":"00","pdq":"11"})", "pdq"},
      // After the escapes are decoded, the names are the same.
      {R"({"pdq":"00","p\u0064q":"11"})", "pdq"},
      {R"({"a\"b":1,"a\u0022b":2})", "a\"b"},
      {R"({"items":[{"pdq":"00"},{"pdq":"00","quality":1,"pdq":"11"}]})", "pdq"},
      {R"({"x":{"y":{"z":1,"z":{}}}})", "z"},
      {R"([1,{"":1,"":2}])", ""},
      // Three times, not next to each other.
      {R"({"k":1,"a":2,"k":3,"b":4,"k":5})", "k"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    Result<json::value> value = ParseJson(c.text, "the body");
    ASSERT_FALSE(value.ok());
    EXPECT_EQ(value.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(value.error().message(),
              std::string("the body names the member \"") + c.name + "\" twice");
  }
}

TEST(StrictJsonTest, TextThatIsNotJsonGetsTheParsersMessage) {
  const struct {
    const char* text;
    const char* message;
  } cases[] = {
      {"", "the pin is not JSON: incomplete JSON"},
      {"{\"a\":", "the pin is not JSON: incomplete JSON"},
      {"garbage", "the pin is not JSON: syntax error"},
      {"{} {}", "the pin is not JSON: extra data"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    Result<json::value> value = ParseJson(c.text, "the pin");
    ASSERT_FALSE(value.ok());
    EXPECT_EQ(value.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(value.error().message(), c.message);
  }
}

}  // namespace
}  // namespace bantay::server
