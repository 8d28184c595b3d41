#include "bantay/matcher/import_formats.h"

#include <gtest/gtest.h>

#include <sstream>
#include <utility>

#include "bantay/models/hash256.h"

namespace bantay::matcher {
namespace {

// PDQ hashes of benign reference images (tests/data/pdq/expected-pdq.csv:
// bridge-1-original, bridge-2-rotate-90, bridge-3-rotate-180,
// bridge-4-rotate-270).
constexpr char kPdq1[] =
    "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
constexpr char kPdq2[] =
    "30a10efdf1c83f429013d48d0ffffc52e34e0e35ada952a9d29605215aa9e5af";
constexpr char kPdq3[] =
    "2dad5a64b1a142e7d362a09857da895ae63b8c7fc23794b766b319361fc93188";
constexpr char kPdq4[] =
    "a5f0a457248995e8c9065c275aaa5498b61ba4bdf8fcf80387c32f8b5bfc4f05";
// MD5 and SHA-256 of "abc" (RFC 1321, FIPS 180-2 test vectors).
constexpr char kMd5[] = "900150983cd24fb0d6963f7d28e17f72";
constexpr char kSha256[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

using Value = std::array<uint8_t, 32>;

Value PdqValue(const char* hex) {
  return models::Hash256::FromHex(hex)->bytes();
}

Value Md5Value() {
  // The 16 digest bytes, then zeros (as IndexEntry::value holds an MD5).
  return {0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f,
          0x7d, 0x28, 0xe1, 0x7f, 0x72, 0,    0,    0,    0,    0,    0,
          0,    0,    0,    0,    0,    0,    0,    0,    0,    0};
}

Value Sha256Value() {
  return {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
          0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
          0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
}

ImportOptions Options(ImportFormat format, std::string source = "list.txt") {
  ImportOptions o;
  o.format = format;
  o.default_list = "hotline";
  o.default_category = "A1";
  o.source_name = std::move(source);
  return o;
}

ParsedImport Parse(const std::string& text, const ImportOptions& options) {
  std::istringstream in(text);
  Result<ParsedImport> parsed = ParseImport(in, options);
  EXPECT_TRUE(parsed.ok()) << parsed.error().ToString();
  return parsed.ok() ? *parsed : ParsedImport{};
}

Error ParseError(const std::string& text, const ImportOptions& options) {
  std::istringstream in(text);
  Result<ParsedImport> parsed = ParseImport(in, options);
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? Error(ErrorCode::kInternal, "parsed") : parsed.error();
}

struct Expected {
  int line;
  std::string list;
  SignalType type;
  Value value;
  std::string category;
  std::string reference;
  int quality;
};

void ExpectRecords(const std::vector<ImportRecord>& got,
                   const std::vector<Expected>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    EXPECT_EQ(got[i].line, want[i].line);
    EXPECT_EQ(got[i].list, want[i].list);
    EXPECT_EQ(got[i].type, want[i].type);
    EXPECT_EQ(got[i].value, want[i].value);
    EXPECT_EQ(got[i].category, want[i].category);
    EXPECT_EQ(got[i].reference, want[i].reference);
    EXPECT_EQ(got[i].quality, want[i].quality);
  }
}

void ExpectErrors(const std::vector<LineError>& got,
                  const std::vector<std::pair<int, std::string>>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].line, want[i].first) << "error " << i;
    EXPECT_EQ(got[i].message, want[i].second) << "error " << i;
  }
}

std::string Lines(std::initializer_list<std::string> lines,
                  const char* end = "\n") {
  std::string out;
  for (const std::string& l : lines) out += l + end;
  return out;
}

// --- format names -----------------------------------------------------------

TEST(ImportFormatTest, NamesRoundTrip) {
  EXPECT_EQ(ImportFormatName(ImportFormat::kLocalFile), "local_file");
  EXPECT_EQ(ImportFormatName(ImportFormat::kCsv), "csv");
  EXPECT_EQ(ImportFormatName(ImportFormat::kVpdq), "vpdq");
  for (ImportFormat f :
       {ImportFormat::kLocalFile, ImportFormat::kCsv, ImportFormat::kVpdq}) {
    Result<ImportFormat> parsed = ParseImportFormat(ImportFormatName(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
  for (const char* bad : {"json", "CSV", "", "local-file"}) {
    Result<ImportFormat> parsed = ParseImportFormat(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(parsed.error().message(), "unknown import format '" +
                                            std::string(bad) +
                                            "' (local_file, csv or vpdq)");
  }
}

TEST(ImportFormatTest, GuessByFileName) {
  EXPECT_EQ(GuessImportFormat("lists/hotline.csv"), ImportFormat::kCsv);
  EXPECT_EQ(GuessImportFormat("HOTLINE.CSV"), ImportFormat::kCsv);
  EXPECT_EQ(GuessImportFormat("videos.json"), ImportFormat::kVpdq);
  EXPECT_EQ(GuessImportFormat("videos.Json"), ImportFormat::kVpdq);
  EXPECT_EQ(GuessImportFormat("hashes.txt"), ImportFormat::kLocalFile);
  EXPECT_EQ(GuessImportFormat("hashes"), ImportFormat::kLocalFile);
  EXPECT_EQ(GuessImportFormat("csv"), ImportFormat::kLocalFile);
  EXPECT_EQ(GuessImportFormat("list.csv.txt"), ImportFormat::kLocalFile);
  EXPECT_EQ(GuessImportFormat("json.d/list"), ImportFormat::kLocalFile);
  // Guess then name: the name a guess gives parses back to the same format.
  for (const char* file : {"a.csv", "a.json", "a.txt"}) {
    const ImportFormat guessed = GuessImportFormat(file);
    EXPECT_EQ(*ParseImportFormat(ImportFormatName(guessed)), guessed) << file;
  }
}

TEST(ImportFormatTest, EmptyFilesHaveNoRecordsAndNoErrors) {
  for (ImportFormat f :
       {ImportFormat::kLocalFile, ImportFormat::kCsv, ImportFormat::kVpdq}) {
    for (const char* text : {"", "\xEF\xBB\xBF", "\n\n", "\r\n"}) {
      ParsedImport p = Parse(text, Options(f));
      EXPECT_EQ(p.records.size(), 0u) << ImportFormatName(f);
      EXPECT_EQ(p.errors.size(), 0u) << ImportFormatName(f);
    }
  }
  ParsedImport header_only = Parse("type,value\n", Options(ImportFormat::kCsv));
  EXPECT_EQ(header_only.records.size(), 0u);
  EXPECT_EQ(header_only.errors.size(), 0u);
  ParsedImport no_frames = Parse("[]", Options(ImportFormat::kVpdq));
  EXPECT_EQ(no_frames.records.size(), 0u);
  EXPECT_EQ(no_frames.errors.size(), 0u);
}

// --- local_file -------------------------------------------------------------

TEST(LocalFileImportTest, GoodLines) {
  const std::string text = Lines({
      "# benign reference images",
      kPdq1,
      std::string("PDQ ") + kPdq2 + " case-7",
      std::string("md5 ") + kMd5,
      std::string("Sha256\t") + kSha256 + "  ref-s",
      "",
      std::string("  \t") + kPdq3 + "\tcase-9 \t",
      "   # indented comment",
      std::string(kPdq4) + " caf\xc3\xa9-\xf0\x9f\x8e\xa5",
  });
  ParsedImport p = Parse(text, Options(ImportFormat::kLocalFile));
  ExpectErrors(p.errors, {});
  ExpectRecords(
      p.records,
      {{2, "hotline", SignalType::kPdq, PdqValue(kPdq1), "A1", "list.txt:2",
        -1},
       {3, "hotline", SignalType::kPdq, PdqValue(kPdq2), "A1", "case-7", -1},
       {4, "hotline", SignalType::kMd5, Md5Value(), "A1", "list.txt:4", -1},
       {5, "hotline", SignalType::kSha256, Sha256Value(), "A1", "ref-s", -1},
       {7, "hotline", SignalType::kPdq, PdqValue(kPdq3), "A1", "case-9", -1},
       {9, "hotline", SignalType::kPdq, PdqValue(kPdq4), "A1",
        "caf\xc3\xa9-\xf0\x9f\x8e\xa5", -1}});
}

// An error quotes what it could not read as printable UTF-8 (\xNN for a
// byte that is not, and for a control character), so that a JSON answer or
// report line holding it is valid JSON and a terminal shows it as it is.
TEST(LocalFileImportTest, QuotedInputIsPrintable) {
  const std::string pdq = std::string(kPdq1);
  ParsedImport p = Parse("\xd4pdq " + pdq + "\n\x1b[2Jpdq " + pdq + "\ncaf\xc3\xa9 " + pdq +
                             "\n",
                         Options(ImportFormat::kLocalFile));
  ExpectErrors(p.errors,
               {
                   {1, "unknown signal type '\\xd4pdq' (pdq, md5 or sha256)"},
                   {2, "unknown signal type '\\x1b[2Jpdq' (pdq, md5 or sha256)"},
                   {3, "unknown signal type 'caf\xc3\xa9' (pdq, md5 or sha256)"},
               });
  EXPECT_EQ(ParseError("type,val\xffue\n", Options(ImportFormat::kCsv)).message(),
            "unknown column 'val\\xffue' in the CSV header (type, value, list, category, "
            "reference, quality)");
}

TEST(LocalFileImportTest, BareValuesTakeTheBareType) {
  ImportOptions o = Options(ImportFormat::kLocalFile, "md5s.txt");
  o.bare_type = SignalType::kMd5;
  const std::string text = Lines({
      std::string(kMd5) + " r1",
      std::string("pdq ") + kPdq1,
      kPdq1,
      std::string(kPdq1) + " r4",
  });
  ParsedImport p = Parse(text, o);
  ExpectRecords(p.records,
                {{1, "hotline", SignalType::kMd5, Md5Value(), "A1", "r1", -1},
                 {2, "hotline", SignalType::kPdq, PdqValue(kPdq1), "A1",
                  "md5s.txt:2", -1}});
  ExpectErrors(p.errors,
               {{3, "an md5 is 32 hexadecimal digits, got 64 characters"},
                {4, "unknown signal type '" + std::string(kPdq1) +
                        "' (pdq, md5 or sha256)"}});
}

// Without a type for bare values, a bare value is PDQ and must have the
// 128 bits set that every PDQ hash of a picture has: SHA-256 digests
// written without their type are refused, not stored as PDQ hashes that
// would never match. A type given (for the line or the file) is taken as
// it is.
TEST(LocalFileImportTest, BareValuesThatCannotBePdqHashesAreRefused) {
  const std::string set_128 = std::string(32, 'f') + std::string(32, '0');
  const std::string set_136 = std::string(34, 'f') + std::string(30, '0');
  const std::string set_0(64, '0');
  const std::string set_256(64, 'f');
  const std::string set_127 = "7" + std::string(31, 'f') + std::string(32, '0');
  const std::string text = Lines({set_128, set_136 + " r2", set_0, set_256, set_127,
                                  "sha256 " + set_136, "pdq " + set_136 + " r7", kPdq1});
  ImportOptions o = Options(ImportFormat::kLocalFile, "digests.txt");
  ParsedImport p = Parse(text, o);
  auto refused = [](int bits) {
    return "a bare value is read as PDQ, but this one sets " + std::to_string(bits) +
           " of its 256 bits where a PDQ hash sets 128: name its type (\"sha256 VALUE\"), or "
           "give the type of bare values";
  };
  ExpectErrors(p.errors,
               {{2, refused(136)}, {3, refused(0)}, {4, refused(256)}, {5, refused(127)}});
  ASSERT_EQ(p.records.size(), 4u);
  EXPECT_EQ(p.records[0].line, 1);
  EXPECT_EQ(p.records[0].type, SignalType::kPdq);
  EXPECT_EQ(p.records[1].line, 6);
  EXPECT_EQ(p.records[1].type, SignalType::kSha256);
  EXPECT_EQ(p.records[2].line, 7);
  EXPECT_EQ(p.records[2].type, SignalType::kPdq);
  EXPECT_EQ(p.records[2].reference, "r7");
  EXPECT_EQ(p.records[3].line, 8);
  EXPECT_EQ(p.records[3].value, PdqValue(kPdq1));

  // pdq given for the file: every line is taken.
  o.bare_type = SignalType::kPdq;
  p = Parse(text, o);
  EXPECT_TRUE(p.errors.empty());
  EXPECT_EQ(p.records.size(), 8u);
  // sha256 given for the file: the bare values are digests.
  o.bare_type = SignalType::kSha256;
  p = Parse(text, o);
  EXPECT_TRUE(p.errors.empty());
  ASSERT_EQ(p.records.size(), 8u);
  EXPECT_EQ(p.records[1].type, SignalType::kSha256);
  EXPECT_EQ(p.records[1].reference, "r2");
}

TEST(LocalFileImportTest, BadLinesAreReportedWithTheirNumbers) {
  std::string bad_hex = kPdq1;
  bad_hex[10] = 'g';
  const std::string pdq = kPdq1;
  const std::string text = Lines({
      "sha1 abcdef",                                     // 1
      "pdq",                                             // 2
      "d8f8",                                            // 3
      bad_hex,                                           // 4
      "md5 abc",                                         // 5
      "sha256 abcd",                                     // 6
      pdq + " ref extra",                                // 7
      pdq + " ref\x01x",                                 // 8
      pdq + " " + std::string(257, 'r'),                 // 9
      pdq + " caf\xe9",                                  // 10: Latin-1
      pdq + " \xc0\xaf",                                 // 11: overlong '/'
      pdq + " \xed\xa0\x80",                             // 12: surrogate
      pdq + " \xf0\x9f\x8e",                             // 13: truncated
      "d8f8 ref",                                        // 14
      "md5 " + std::string(kMd5) + " r\x7f",             // 15
      pdq + " " + std::string(256, 'r'),                 // 16: longest accepted
      "sha256 " + std::string(kSha256).substr(1) + "g",  // 17
  });
  ParsedImport p = Parse(text, Options(ImportFormat::kLocalFile));
  ExpectErrors(p.errors,
               {
                   {1, "unknown signal type 'sha1' (pdq, md5 or sha256)"},
                   {2, "no hash after the type"},
                   {3, "a PDQ hash is 64 hexadecimal digits, got 4 characters"},
                   {4, "non-hexadecimal character at position 10"},
                   {5, "an md5 is 32 hexadecimal digits, got 3 characters"},
                   {6, "a sha256 is 64 hexadecimal digits, got 4 characters"},
                   {7, "too many columns (expected [TYPE] VALUE [REFERENCE])"},
                   {8, "reference contains a control character (0x01)"},
                   {9, "reference is longer than 256 bytes (257)"},
                   {10, "reference is not valid UTF-8"},
                   {11, "reference is not valid UTF-8"},
                   {12, "reference is not valid UTF-8"},
                   {13, "reference is not valid UTF-8"},
                   {14, "unknown signal type 'd8f8' (pdq, md5 or sha256)"},
                   {15, "reference contains a control character (0x7f)"},
                   {17, "non-hexadecimal character at position 63"},
               });
  ExpectRecords(p.records, {{16, "hotline", SignalType::kPdq, PdqValue(kPdq1),
                             "A1", std::string(256, 'r'), -1}});
}

TEST(LocalFileImportTest, ListAndCategoryComeFromTheOptionsAndAreChecked) {
  ImportOptions o = Options(ImportFormat::kLocalFile);
  o.default_list = "";
  const std::string text = Lines({kPdq1, std::string("md5 ") + kMd5});
  ParsedImport p = Parse(text, o);
  EXPECT_EQ(p.records.size(), 0u);
  ExpectErrors(p.errors, {{1, "no list given (use --list)"},
                          {2, "no list given (use --list)"}});

  o.default_list = "ngo-b";
  o.default_category = "B\n2";
  p = Parse(text, o);
  EXPECT_EQ(p.records.size(), 0u);
  ExpectErrors(p.errors, {{1, "category contains a control character (0x0a)"},
                          {2, "category contains a control character (0x0a)"}});

  o.default_category = "";
  o.default_list = std::string(257, 'l');
  p = Parse(text, o);
  ExpectErrors(p.errors, {{1, "list is longer than 256 bytes (257)"},
                          {2, "list is longer than 256 bytes (257)"}});

  o.default_list = "ngo-b";
  p = Parse(text, o);
  ExpectErrors(p.errors, {});
  ExpectRecords(
      p.records,
      {{1, "ngo-b", SignalType::kPdq, PdqValue(kPdq1), "", "list.txt:1", -1},
       {2, "ngo-b", SignalType::kMd5, Md5Value(), "", "list.txt:2", -1}});
}

TEST(LocalFileImportTest, CrlfAndBom) {
  const std::string text = "\xEF\xBB\xBFpdq " + std::string(kPdq1) + "\r\n" +
                           Lines({"# comment", "", std::string(kMd5) + " r2",
                                  std::string(kPdq2) + " r3", kPdq3},
                                 "\r\n");
  ImportOptions o = Options(ImportFormat::kLocalFile);
  ParsedImport p = Parse(text, o);
  // Line 4 is an md5 without its type: a bare value is a PDQ here.
  ExpectErrors(p.errors, {{4, "unknown signal type '" + std::string(kMd5) +
                                  "' (pdq, md5 or sha256)"}});
  ExpectRecords(p.records, {{1, "hotline", SignalType::kPdq, PdqValue(kPdq1),
                             "A1", "list.txt:1", -1},
                            {5, "hotline", SignalType::kPdq, PdqValue(kPdq2),
                             "A1", "r3", -1},
                            {6, "hotline", SignalType::kPdq, PdqValue(kPdq3),
                             "A1", "list.txt:6", -1}});

  // A BOM is only a BOM at the start of the file.
  p = Parse(std::string(kPdq1) + "\n\xEF\xBB\xBF" + kPdq2 + "\n", o);
  ExpectRecords(p.records, {{1, "hotline", SignalType::kPdq, PdqValue(kPdq1),
                             "A1", "list.txt:1", -1}});
  ExpectErrors(p.errors,
               {{2, "a PDQ hash is 64 hexadecimal digits, got 67 characters"}});
}

// --- csv --------------------------------------------------------------------

TEST(CsvImportTest, GoodRows) {
  const std::string text = Lines({
      "Value,TYPE,list,category,reference,quality",
      std::string(kPdq1) + ",pdq,ngo-b,B2,case-1,100",
      std::string(kMd5) + ",MD5,,,,",
      std::string(kSha256) + ",sha256,lab,,ref-s,",
      std::string(kPdq2) + ",Pdq,,C,,50",
      std::string(" ") + kPdq3 + " , pdq ,,,,0 ",
  });
  ImportOptions o = Options(ImportFormat::kCsv, "list.csv");
  o.min_quality = 0;
  ParsedImport p = Parse(text, o);
  ExpectErrors(p.errors, {});
  ExpectRecords(
      p.records,
      {{2, "ngo-b", SignalType::kPdq, PdqValue(kPdq1), "B2", "case-1", 100},
       {3, "hotline", SignalType::kMd5, Md5Value(), "A1", "list.csv:3", -1},
       {4, "lab", SignalType::kSha256, Sha256Value(), "A1", "ref-s", -1},
       {5, "hotline", SignalType::kPdq, PdqValue(kPdq2), "C", "list.csv:5", 50},
       {6, "hotline", SignalType::kPdq, PdqValue(kPdq3), "A1", "list.csv:6",
        0}});
}

TEST(CsvImportTest, OnlyTheMandatoryColumns) {
  ParsedImport p = Parse(Lines({" type , value", std::string("pdq,") + kPdq1,
                                std::string("md5,") + kMd5}),
                         Options(ImportFormat::kCsv, "l.csv"));
  ExpectErrors(p.errors, {});
  ExpectRecords(
      p.records,
      {{2, "hotline", SignalType::kPdq, PdqValue(kPdq1), "A1", "l.csv:2", -1},
       {3, "hotline", SignalType::kMd5, Md5Value(), "A1", "l.csv:3", -1}});
}

TEST(CsvImportTest, QuotedCommasQuotesAndNewlines) {
  const std::string text =
      "type,value,reference,list\n"  // 1
      "pdq," +
      std::string(kPdq1) +
      ",\"case 1, part \"\"a\"\"\",\"hot,line\"\n"  // 2
      "\"pdq\",\"" +
      kPdq2 +
      "\",\"two\nlines\",\"\"\n"  // 3-4
      "\n"                        // 5
      "md5,\"" +
      kMd5 +
      "\",\"\"\"\",x\n"  // 6
      "sha256," +
      kSha256 +
      ",\"a,\n\n\",\"y\"\n"  // 7-9
      "pdq," +
      kPdq3 + ",\"\",\n";  // 10
  ParsedImport p = Parse(text, Options(ImportFormat::kCsv, "q.csv"));
  ExpectErrors(p.errors,
               {{3, "reference contains a control character (0x0a)"},
                {7, "reference contains a control character (0x0a)"}});
  ExpectRecords(p.records,
                {{2, "hot,line", SignalType::kPdq, PdqValue(kPdq1), "A1",
                  "case 1, part \"a\"", -1},
                 {6, "x", SignalType::kMd5, Md5Value(), "A1", "\"", -1},
                 {10, "hotline", SignalType::kPdq, PdqValue(kPdq3), "A1",
                  "q.csv:10", -1}});
}

TEST(CsvImportTest, BadRows) {
  const std::string pdq = kPdq1;
  const std::string text = Lines({
      "type,value,quality",                 // 1
      "pdq," + pdq + ",100,extra",          // 2
      "," + pdq + ",100",                   // 3
      "sha1," + pdq + ",100",               // 4
      "pdq," + pdq + ",101",                // 5
      "pdq," + pdq + ",abc",                // 6
      "pdq," + pdq + ",-1",                 // 7
      "pdq," + pdq + ",49",                 // 8
      "pdq," + std::string(kPdq2) + ",50",  // 9
      "pdq,x\"y,50",                        // 10
      "pdq,\"" + pdq + "\"x,50",            // 11
      "pdq," + pdq,                         // 12
      "md5," + pdq + ",",                   // 13
      "pdq,,",                              // 14
      "pdq," + pdq + ",5.5",                // 15
      "",                                   // 16
      "pdq,\"" + pdq + ",50",               // 17 (never closed)
      "pdq," + pdq + ",50",                 // 18 (inside the quotes)
  });
  ParsedImport p = Parse(text, Options(ImportFormat::kCsv, "bad.csv"));
  ExpectErrors(p.errors,
               {{2, "expected 3 fields, got 4"},
                {3, "no type given"},
                {4, "unknown signal type 'sha1' (pdq, md5 or sha256)"},
                {5, "quality must be an integer from 0 to 100, got '101'"},
                {6, "quality must be an integer from 0 to 100, got 'abc'"},
                {7, "quality must be an integer from 0 to 100, got '-1'"},
                {8, "quality 49 is below the minimum 50"},
                {10, "a quote inside unquoted field 2 (quote the field)"},
                {11, "characters after the closing quote of field 2"},
                {12, "expected 3 fields, got 2"},
                {13, "an md5 is 32 hexadecimal digits, got 64 characters"},
                {14, "a PDQ hash is 64 hexadecimal digits, got 0 characters"},
                {15, "quality must be an integer from 0 to 100, got '5.5'"},
                {17, "unterminated quoted field"}});
  ExpectRecords(p.records, {{9, "hotline", SignalType::kPdq, PdqValue(kPdq2),
                             "A1", "bad.csv:9", 50}});
}

TEST(CsvImportTest, BadHeadersRefuseTheWholeFile) {
  const ImportOptions o = Options(ImportFormat::kCsv);
  const std::string row = std::string("\npdq,") + kPdq1 + ",x\n";
  struct Case {
    std::string text;
    std::string message;
  } cases[] = {
      {"type,value,lst" + row,
       "unknown column 'lst' in the CSV header (type, value, list, category, "
       "reference, quality)"},
      {"type,value,Type" + row,
       "column 'type' appears twice in the CSV header"},
      {"type,list,category" + row, "the CSV header has no 'value' column"},
      {"value,list,category" + row, "the CSV header has no 'type' column"},
      {"type,value," + row,
       "unknown column '' in the CSV header (type, value, list, category, "
       "reference, quality)"},
      {std::string("pdq,") + kPdq1 + "\n",
       "unknown column 'pdq' in the CSV header (type, value, list, category, "
       "reference, quality)"},
      {"type,\"value\"x" + row,
       "the CSV header is malformed: characters after the closing "
       "quote of field 2"},
  };
  for (const Case& c : cases) {
    Error e = ParseError(c.text, o);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << c.text;
    EXPECT_EQ(e.message(), c.message) << c.text;
  }
}

TEST(CsvImportTest, CrlfAndBom) {
  const std::string text =
      "\xEF\xBB\xBF" +
      Lines({"type,value,reference", std::string("pdq,") + kPdq1 + ",r1",
             std::string("md5,") + kMd5 + ",",
             std::string("pdq,") + kPdq2 + ",\"a\r\nb\"",
             std::string("pdq,") + kPdq3 + ",r5"},
            "\r\n");
  ParsedImport p = Parse(text, Options(ImportFormat::kCsv, "w.csv"));
  ExpectErrors(p.errors,
               {{4, "reference contains a control character (0x0a)"}});
  ExpectRecords(
      p.records,
      {{2, "hotline", SignalType::kPdq, PdqValue(kPdq1), "A1", "r1", -1},
       {3, "hotline", SignalType::kMd5, Md5Value(), "A1", "w.csv:3", -1},
       {6, "hotline", SignalType::kPdq, PdqValue(kPdq3), "A1", "r5", -1}});
}

// --- vpdq -------------------------------------------------------------------

std::string Frame(const char* hash, const std::string& quality,
                  const std::string& timestamp) {
  return std::string("{\"hash\":\"") + hash + "\",\"quality\":" + quality +
         ",\"timestamp\":" + timestamp + "}";
}

TEST(VpdqImportTest, BareArrayOfFramesIsOneVideo) {
  const std::string text =
      "[" + Frame(kPdq1, "100", "0") + ",\n" +
      "{\"frame_number\":1,\"hash\":\"" + kPdq2 +
      "\",\"quality\":50,\"timestamp\":0.5},\n" + Frame(kPdq1, "100", "1.0") +
      ",\n" +                              // same hash: dropped
      Frame(kPdq3, "49", "1.5") + ",\n" +  // under the threshold
      Frame(kPdq4, "100", "12.3456") + "]";
  ParsedImport p = Parse(text, Options(ImportFormat::kVpdq, "clip.json"));
  ExpectErrors(p.errors,
               {{4, "video 1, frame 4: quality 49 is below the minimum 50"}});
  ExpectRecords(p.records, {{1, "hotline", SignalType::kPdq, PdqValue(kPdq1),
                             "A1", "clip.json#1@0.000s", 100},
                            {2, "hotline", SignalType::kPdq, PdqValue(kPdq2),
                             "A1", "clip.json#1@0.500s", 50},
                            {5, "hotline", SignalType::kPdq, PdqValue(kPdq4),
                             "A1", "clip.json#1@12.346s", 100}});
}

TEST(VpdqImportTest, ArrayOfVideos) {
  const std::string text =
      "\xEF\xBB\xBF[{\"reference\":\"vid-a\",\"list\":\"ngo-b\",\"category\":"
      "\"B2\",\"frames\":[" +
      Frame(kPdq1, "90", "1.25") + "," + Frame(kPdq2, "80", "2") + "," +
      Frame(kPdq1, "90", "3") + "]},\r\n" + "{\"frames\":[" +
      Frame(kPdq1, "100", "3.0") + "," + Frame(kPdq3, "100", "-1") + "]},\n" +
      "{\"frames\":[]},\n" +
      "{\"reference\":\"\",\"list\":\"\",\"category\":\"\",\"frames\":[" +
      Frame(kPdq4, "100", "7") + "]}]";
  ParsedImport p = Parse(text, Options(ImportFormat::kVpdq, "videos.json"));
  ExpectErrors(
      p.errors,
      {{5, "video 2, frame 2: timestamp must be a number >= 0, got -1"}});
  ExpectRecords(p.records, {{1, "ngo-b", SignalType::kPdq, PdqValue(kPdq1),
                             "B2", "vid-a@1.250s", 90},
                            {2, "ngo-b", SignalType::kPdq, PdqValue(kPdq2),
                             "B2", "vid-a@2.000s", 80},
                            // The same hash in another video is another record.
                            {4, "hotline", SignalType::kPdq, PdqValue(kPdq1),
                             "A1", "videos.json#2@3.000s", 100},
                            {6, "hotline", SignalType::kPdq, PdqValue(kPdq4),
                             "A1", "videos.json#4@7.000s", 100}});
}

TEST(VpdqImportTest, BadFrames) {
  std::string bad_hex = kPdq1;
  bad_hex[3] = 'x';
  const std::string frames[] = {
      "{\"hash\":\"" + std::string(kPdq1) + "\",\"timestamp\":1}",  // 1
      Frame(std::string(kPdq1).substr(1).c_str(), "100", "1"),      // 2
      "{\"hash\":5,\"quality\":100,\"timestamp\":1}",               // 3
      "{\"quality\":100,\"timestamp\":1}",                          // 4
      Frame(kPdq1, "100.5", "1"),                                   // 5
      Frame(kPdq1, "101", "1"),                                     // 6
      Frame(kPdq1, "\"100\"", "1"),                                 // 7
      Frame(kPdq1, "-3", "1"),                                      // 8
      "{\"hash\":\"" + std::string(kPdq1) + "\",\"quality\":100}",  // 9
      Frame(kPdq1, "100", "\"1\""),                                 // 10
      Frame(kPdq1, "100", "-0.5"),                                  // 11
      "7",                                                          // 12
      Frame(bad_hex.c_str(), "100", "1"),                           // 13
      Frame(kPdq1, "100", "null"),                                  // 14
      Frame(kPdq2, "100.0", "1e300"),                               // 15
      Frame(kPdq3, "100.0", "2"),                                   // 16
  };
  std::string text =
      "[{\"frames\":[" + Frame(kPdq4, "100", "0") + "]},{\"frames\":[";
  for (size_t i = 0; i < std::size(frames); ++i)
    text += (i ? "," : "") + frames[i];
  text += "]}]";
  ParsedImport p = Parse(text, Options(ImportFormat::kVpdq, "v.json"));
  ExpectErrors(
      p.errors,
      {{2, "video 2, frame 1: \"quality\" is missing"},
       {3,
        "video 2, frame 2: a PDQ hash is 64 hexadecimal digits, got 63 "
        "characters"},
       {4, "video 2, frame 3: \"hash\" is missing or not a string"},
       {5, "video 2, frame 4: \"hash\" is missing or not a string"},
       {6,
        "video 2, frame 5: quality must be an integer from 0 to 100, got "
        "'100.5'"},
       {7,
        "video 2, frame 6: quality must be an integer from 0 to 100, got "
        "'101'"},
       {8,
        "video 2, frame 7: quality must be an integer from 0 to 100, got "
        "'\"100\"'"},
       {9,
        "video 2, frame 8: quality must be an integer from 0 to 100, got '-3'"},
       {10, "video 2, frame 9: \"timestamp\" is missing"},
       {11, "video 2, frame 10: timestamp must be a number >= 0, got \"1\""},
       {12, "video 2, frame 11: timestamp must be a number >= 0, got -0.5"},
       {13, "video 2, frame 12: not a JSON object"},
       {14, "video 2, frame 13: non-hexadecimal character at position 3"},
       {15, "video 2, frame 14: timestamp must be a number >= 0, got null"},
       // 1e300 printed in full: 301 digits, so "v.json#2@" + 301 + ".000s".
       {16, "video 2, frame 15: reference is longer than 256 bytes (315)"}});
  ExpectRecords(p.records, {{1, "hotline", SignalType::kPdq, PdqValue(kPdq4),
                             "A1", "v.json#1@0.000s", 100},
                            {17, "hotline", SignalType::kPdq, PdqValue(kPdq3),
                             "A1", "v.json#2@2.000s", 100}});
}

TEST(VpdqImportTest, VideoTextIsCheckedForEveryFrame) {
  const std::string text =
      "[{\"reference\":\"a\\tb\",\"frames\":[" + Frame(kPdq1, "100", "0") +
      "," + Frame(kPdq2, "100", "1") + "]},{\"list\":\"" +
      std::string(257, 'l') + "\",\"frames\":[" + Frame(kPdq3, "100", "0") +
      "]},{\"frames\":[" + Frame(kPdq4, "100", "0") + "]}]";
  ImportOptions o = Options(ImportFormat::kVpdq, "t.json");
  ParsedImport p = Parse(text, o);
  ExpectErrors(
      p.errors,
      {{1, "video 1, frame 1: reference contains a control character (0x09)"},
       {2, "video 1, frame 2: reference contains a control character (0x09)"},
       {3, "video 2, frame 1: list is longer than 256 bytes (257)"}});
  ExpectRecords(p.records, {{4, "hotline", SignalType::kPdq, PdqValue(kPdq4),
                             "A1", "t.json#3@0.000s", 100}});

  o.default_list = "";
  p = Parse("[" + Frame(kPdq1, "100", "0") + "]", o);
  EXPECT_EQ(p.records.size(), 0u);
  ExpectErrors(p.errors, {{1, "video 1, frame 1: no list given (use --list)"}});
}

TEST(VpdqImportTest, MinQualityBoundary) {
  const std::string text =
      "[" + Frame(kPdq1, "49", "0") + "," + Frame(kPdq2, "50", "1") + "]";
  ImportOptions o = Options(ImportFormat::kVpdq, "m.json");
  ParsedImport p = Parse(text, o);
  ExpectErrors(p.errors,
               {{1, "video 1, frame 1: quality 49 is below the minimum 50"}});
  ExpectRecords(p.records, {{2, "hotline", SignalType::kPdq, PdqValue(kPdq2),
                             "A1", "m.json#1@1.000s", 50}});

  o.min_quality = 49;
  p = Parse(text, o);
  ExpectErrors(p.errors, {});
  EXPECT_EQ(p.records.size(), 2u);

  o.min_quality = 51;
  p = Parse(text, o);
  ExpectErrors(p.errors,
               {{1, "video 1, frame 1: quality 49 is below the minimum 51"},
                {2, "video 1, frame 2: quality 50 is below the minimum 51"}});
  EXPECT_EQ(p.records.size(), 0u);
}

TEST(VpdqImportTest, WrongDocumentsRefuseTheWholeFile) {
  const ImportOptions o = Options(ImportFormat::kVpdq);
  for (const std::string& text :
       {std::string("{"), std::string("[") + Frame(kPdq1, "100", "0"),
        std::string("not json"), std::string("[] []")}) {
    Error e = ParseError(text, o);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << text;
    EXPECT_EQ(e.message().rfind("not valid JSON: ", 0), 0u) << e.message();
  }
  struct Case {
    std::string text;
    std::string message;
  } cases[] = {
      {"{\"frames\":[]}", "expected a JSON array of frames or of videos"},
      {"\"x\"", "expected a JSON array of frames or of videos"},
      {"[1,2]", "expected a JSON array of frames or of videos"},
      {"[{\"frames\":5}]", "video 1 is not an object with a \"frames\" array"},
      {"[{\"frames\":[]}," + Frame(kPdq1, "100", "0") + "]",
       "video 2 is not an object with a \"frames\" array"},
      {"[{\"frames\":[]},{\"frames\":[],\"reference\":5}]",
       "video 2: \"reference\" is not a string"},
      {"[{\"frames\":[],\"list\":[\"a\"]}]",
       "video 1: \"list\" is not a string"},
      {"[{\"frames\":[],\"category\":null}]",
       "video 1: \"category\" is not a string"},
  };
  for (const Case& c : cases) {
    Error e = ParseError(c.text, o);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << c.text;
    EXPECT_EQ(e.message(), c.message) << c.text;
  }
}

}  // namespace
}  // namespace bantay::matcher
