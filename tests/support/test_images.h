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

// One entry of a TIFF image file directory (TIFF 6.0, section 2): type 1
// BYTE, 3 SHORT, 4 LONG, 16 LONG8, ...
struct TiffField {
  uint16_t tag;
  uint16_t type;
  uint32_t count;
  uint32_t value;  // kTiffDataOffset: the offset of the data after the IFD
};
inline constexpr uint32_t kTiffDataOffset = 0xFFFFFFFF;

// A classic TIFF with one IFD of `fields`, in the order given (SHORT and
// BYTE values left-justified in the value field, as the format stores
// them), followed by `data`.
std::vector<uint8_t> MakeTiff(const std::vector<TiffField>& fields,
                              const std::vector<uint8_t>& data, bool big_endian = false);
// The fields of an 8-bit grey, uncompressed image (all but its size): one
// strip of `data_bytes` at the data, or, when tile_width > 0, one tile.
std::vector<TiffField> GreyTiffFields(uint32_t rows, uint32_t data_bytes,
                                      uint32_t tile_width = 0, uint32_t tile_height = 0);

// A progressive JPEG of MakePattern(64, 48) whose last scan is repeated
// until it has `scans` scans (at least its own 10): libjpeg decodes it (it
// only warns of the odd progression), one pass over the picture a scan.
std::vector<uint8_t> JpegWithScans(size_t scans);

// A simple WebP (one VP8 or VP8L chunk, as OpenCV writes it) of a
// width x height picture rewritten in the extended format (RFC 9649): a VP8X
// chunk with `flags` (0x20 ICC profile, 0x02 animation, ...) and, when
// icc_bytes > 0, an ICCP chunk of that many bytes before the image's chunk.
std::vector<uint8_t> ExtendedWebp(const std::vector<uint8_t>& simple, uint32_t width,
                                  uint32_t height, uint8_t flags, size_t icc_bytes);

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
