#include "bantay/models/text.h"

#include <gtest/gtest.h>

#include <string>

namespace bantay::models {
namespace {

TEST(TextTest, StrictUtf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x89"));  // é € 🎉
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));                           // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("caf\xe9"));                                   // Latin-1
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));                                  // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));                              // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));                              // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));                          // over U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xf0\x9f\x8e"));                              // truncated
  EXPECT_FALSE(IsValidUtf8("\x80"));                                      // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xf8\x88\x80\x80\x80"));                      // 5-byte form
  EXPECT_EQ(Utf8SequenceLength("a\xe2\x82\xac", 1), 3u);
  EXPECT_EQ(Utf8SequenceLength("a\xe2\x82", 1), 0u);
}

TEST(TextTest, LossyReplacesEachBadByte) {
  EXPECT_EQ(Utf8Lossy("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(Utf8Lossy("caf\xe9!"), "caf\xef\xbf\xbd!");
  EXPECT_EQ(Utf8Lossy("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(TextTest, PrintableTextEscapesBadBytesAndControlCharacters) {
  EXPECT_EQ(PrintableText("sample-ref_1 (ok)"), "sample-ref_1 (ok)");
  EXPECT_EQ(PrintableText("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(PrintableText("\xd4pdq"), "\\xd4pdq");
  EXPECT_EQ(PrintableText("\x1b[2J\r\n\t\x7f"), "\\x1b[2J\\x0d\\x0a\\x09\\x7f");
  EXPECT_EQ(PrintableText(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(PrintableText("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(PrintableText("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(PrintableText("x\xf0\x9f\x8e"), "x\\xf0\\x9f\\x8e");
  // Its output is printable: a second pass changes nothing.
  for (const std::string text : {"\xd4pdq", "\x1b[2J", "caf\xe9", "\xed\xa0\x80"}) {
    const std::string once = PrintableText(text);
    EXPECT_TRUE(IsValidUtf8(once));
    EXPECT_EQ(PrintableText(once), once);
  }
}

}  // namespace
}  // namespace bantay::models
