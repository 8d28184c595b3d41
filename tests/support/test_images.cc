#include "test_images.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

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
