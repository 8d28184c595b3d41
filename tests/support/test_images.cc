#include "test_images.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace bantay::testing {

cv::Mat MakePattern(int width, int height) {
  cv::Mat image(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    auto* row = image.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x) {
      const double u = static_cast<double>(x) / width;
      const double v = static_cast<double>(y) / height;
      row[x] = cv::Vec3b(
          static_cast<uint8_t>(127 + 120 * std::sin(9 * u + 4 * v)),
          static_cast<uint8_t>(255 * u),
          static_cast<uint8_t>(127 + 120 * std::cos(13 * v * u + 3 * v)));
    }
  }
  const int s = std::min(width, height);
  cv::circle(image, {width / 3, height / 2}, s / 5, {20, 200, 40}, cv::FILLED);
  cv::rectangle(image, {width / 2, height / 5}, {width * 4 / 5, height / 2},
                {240, 30, 90}, cv::FILLED);
  cv::line(image, {0, height - 1}, {width - 1, 0}, {0, 0, 0}, std::max(1, s / 30));
  return image;
}

std::vector<uint8_t> Encode(const cv::Mat& image, const std::string& ext,
                            const std::vector<int>& params) {
  std::vector<uint8_t> out;
  if (!cv::imencode(ext, image, out, params)) {
    throw std::runtime_error("imencode failed for " + ext);
  }
  return out;
}

std::string TestDataPath(const std::string& relative_path) {
  return std::string(BANTAY_TEST_DATA) + "/" + relative_path;
}

std::vector<uint8_t> JpegWithScans(size_t scans) {
  const auto jpeg = Encode(MakePattern(64, 48), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  size_t last = 0, have = 0;
  for (size_t i = 0; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDA) {
      last = i;
      ++have;
    }
  }
  const size_t eoi = jpeg.size() - 2;
  std::vector<uint8_t> out(jpeg.begin(), jpeg.begin() + static_cast<long>(eoi));
  for (; have < scans; ++have) {
    out.insert(out.end(), jpeg.begin() + static_cast<long>(last),
               jpeg.begin() + static_cast<long>(eoi));
  }
  out.push_back(0xFF);
  out.push_back(0xD9);
  return out;
}

std::vector<uint8_t> ExtendedWebp(const std::vector<uint8_t>& simple, uint32_t width,
                                  uint32_t height, uint8_t flags, size_t icc_bytes) {
  // Byte by byte: GCC 12 (at -O1, as in the TSan build) takes vector inserts
  // here for overflows (-Wstringop-overflow, -Warray-bounds).
  std::vector<uint8_t> out;
  auto put = [&](uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  auto tag = [&](std::string_view fourcc) {
    for (const char c : fourcc) out.push_back(static_cast<uint8_t>(c));
  };
  tag("RIFF");
  put(0, 4);  // the RIFF size, set at the end
  tag("WEBP");
  tag("VP8X");
  put(10, 4);
  put(flags, 4);  // the flags byte, then 24 reserved bits
  put(width - 1, 3);
  put(height - 1, 3);
  if (icc_bytes > 0) {
    tag("ICCP");
    put(static_cast<uint32_t>(icc_bytes), 4);
    for (size_t i = 0; i < icc_bytes; ++i) out.push_back(0x5A);
    if (icc_bytes % 2 != 0) out.push_back(0);  // chunks are padded to even sizes
  }
  for (size_t i = 12; i < simple.size(); ++i) out.push_back(simple[i]);  // after RIFF size WEBP
  const auto riff_size = static_cast<uint32_t>(out.size() - 8);
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<uint8_t>(riff_size >> (8 * i));
  return out;
}

std::vector<uint8_t> MakeTiff(const std::vector<TiffField>& fields,
                              const std::vector<uint8_t>& data, bool big_endian) {
  std::vector<uint8_t> out;
  auto put = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) {
      const int shift = big_endian ? 8 * (bytes - 1 - i) : 8 * i;
      out.push_back(static_cast<uint8_t>(v >> shift));
    }
  };
  const uint8_t order = big_endian ? 'M' : 'I';
  out.push_back(order);
  out.push_back(order);
  put(42, 2);
  put(8, 4);  // the IFD follows the header
  const uint32_t data_offset = static_cast<uint32_t>(8 + 2 + 12 * fields.size() + 4);
  put(fields.size(), 2);
  for (const TiffField& f : fields) {
    const uint32_t value = f.value == kTiffDataOffset ? data_offset : f.value;
    put(f.tag, 2);
    put(f.type, 2);
    put(f.count, 4);
    if (f.type == 3) {
      put(value, 2);
      put(0, 2);
    } else if (f.type == 1) {
      put(value, 1);
      put(0, 3);
    } else {
      put(value, 4);
    }
  }
  put(0, 4);  // no next IFD
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<TiffField> GreyTiffFields(uint32_t rows, uint32_t data_bytes, uint32_t tile_width,
                                      uint32_t tile_height) {
  std::vector<TiffField> fields = {
      {258, 3, 1, 8},  // BitsPerSample
      {259, 3, 1, 1},  // Compression: none
      {262, 3, 1, 1},  // PhotometricInterpretation: black is zero
      {277, 3, 1, 1},  // SamplesPerPixel
  };
  if (tile_width > 0) {
    fields.push_back({322, 4, 1, tile_width});
    fields.push_back({323, 4, 1, tile_height});
    fields.push_back({324, 4, 1, kTiffDataOffset});  // TileOffsets
    fields.push_back({325, 4, 1, data_bytes});       // TileByteCounts
  } else {
    fields.push_back({273, 4, 1, kTiffDataOffset});  // StripOffsets
    fields.push_back({278, 4, 1, rows});             // RowsPerStrip
    fields.push_back({279, 4, 1, data_bytes});       // StripByteCounts
  }
  // In ascending tag order, as the format asks.
  std::sort(fields.begin(), fields.end(),
            [](const TiffField& a, const TiffField& b) { return a.tag < b.tag; });
  return fields;
}

std::vector<uint8_t> FromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::vector<uint8_t> ReadTestFile(const std::string& relative_path) {
  std::ifstream in(TestDataPath(relative_path), std::ios::binary);
  if (!in) throw std::runtime_error("missing test file " + relative_path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::map<std::string, std::vector<std::string>> ReadExpectedCsv(
    const std::string& relative_path) {
  std::ifstream in(TestDataPath(relative_path));
  if (!in) throw std::runtime_error("missing " + relative_path);
  std::map<std::string, std::vector<std::string>> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string path, field;
    std::getline(fields, path, ',');
    std::vector<std::string> rest;
    while (std::getline(fields, field, ',')) rest.push_back(field);
    rows[path] = rest;
  }
  return rows;
}

TempDir::TempDir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "bantay-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name,
                           const std::vector<uint8_t>& bytes) const {
  const std::filesystem::path p = std::filesystem::path(path_) / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return p.string();
}

}  // namespace bantay::testing
