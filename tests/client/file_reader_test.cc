#include "bantay/client/file_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_images.h"

namespace bantay::client {
namespace {

TEST(FileReaderTest, ReadsWholeFileAndHead) {
  testing::TempDir dir;
  const std::string path = dir.Write("a.bin", {1, 2, 3, 4, 5});
  Result<std::vector<uint8_t>> all = ReadWholeFile(path);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<uint8_t>{1, 2, 3, 4, 5}));
  Result<std::vector<uint8_t>> head = ReadFileHead(path, 2);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, (std::vector<uint8_t>{1, 2}));
}

// A file the caller opened is read from its start, whatever its offset,
// and stays open.
TEST(FileReaderTest, ReadsAnOpenFileFromItsStart) {
  testing::TempDir dir;
  const std::string path = dir.Write("a.bin", {1, 2, 3, 4, 5});
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(lseek(fd, 3, SEEK_SET), 3);
  Result<std::vector<uint8_t>> head = ReadOpenFileHead(fd, 2);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, (std::vector<uint8_t>{1, 2}));
  Result<std::vector<uint8_t>> all = ReadWholeOpenFile(fd);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<uint8_t>{1, 2, 3, 4, 5}));
  Result<std::vector<uint8_t>> too_big = ReadWholeOpenFile(fd, 4);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().message(), "file is 5 bytes, over the limit of 4");
  EXPECT_EQ(close(fd), 0);
}

TEST(FileReaderTest, Errors) {
  testing::TempDir dir;
  Result<std::vector<uint8_t>> missing = ReadWholeFile(dir.path() + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message(), "open: no such file");

  Result<std::vector<uint8_t>> directory = ReadWholeFile(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(directory.error().message(), "open: is a directory");

  const std::string big = dir.Write("big.bin", std::vector<uint8_t>(100, 7));
  Result<std::vector<uint8_t>> too_big = ReadWholeFile(big, 99);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code(), ErrorCode::kTooLarge);
  EXPECT_EQ(too_big.error().message(), "file is 100 bytes, over the limit of 99");
  EXPECT_TRUE(ReadWholeFile(big, 100).ok());
}

TEST(FileReaderTest, PathThroughAFileIsNotFound) {
  testing::TempDir dir;
  const std::string file = dir.Write("plain", {9});
  Result<std::vector<uint8_t>> r = ReadWholeFile(file + "/inside");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
}

TEST(FileReaderTest, DoesNotModifyTheFile) {
  testing::TempDir dir;
  const std::string path = dir.Write("evidence.bin", {1, 2, 3});
  struct stat before;
  ASSERT_EQ(stat(path.c_str(), &before), 0);
  ASSERT_TRUE(ReadWholeFile(path).ok());
  struct stat after;
  ASSERT_EQ(stat(path.c_str(), &after), 0);
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
  EXPECT_EQ(before.st_size, after.st_size);
}

}  // namespace
}  // namespace bantay::client
