// Generated pictures and reference data for the tests. Everything here is
// synthetic or from the benign reference set in tests/data (see its README).
#ifndef BANTAY_TESTS_SUPPORT_TEST_IMAGES_H_
#define BANTAY_TESTS_SUPPORT_TEST_IMAGES_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

namespace bantay::testing {

// A deterministic colour picture (gradients, discs and bars) with plenty of
// structure, so its PDQ quality is 100.
cv::Mat MakePattern(int width, int height);

// Encodes with OpenCV (".png", ".jpg", ".webp", ".bmp", ".tiff").
std::vector<uint8_t> Encode(const cv::Mat& image, const std::string& ext,
                            const std::vector<int>& params = {});

// Bytes of a hexadecimal string (test vectors; the input is trusted).
std::vector<uint8_t> FromHex(std::string_view hex);

std::vector<uint8_t> ReadTestFile(const std::string& relative_path);
std::string TestDataPath(const std::string& relative_path);

// Rows of tests/data/pdq/expected-pdq*.csv: path -> columns after the path.
std::map<std::string, std::vector<std::string>> ReadExpectedCsv(
    const std::string& relative_path);

// A fresh empty directory under the system temporary directory, removed by
// the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::vector<uint8_t>& bytes) const;

 private:
  std::string path_;
};

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_SUPPORT_TEST_IMAGES_H_
