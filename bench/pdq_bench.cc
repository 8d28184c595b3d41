// PDQ hashing speed on 1080p JPEG frames, one core.
//
// Workload: 104 frames of 1920x1080 cut from the photographs of Debian's
// mate-backgrounds package (nature/*.jpg and Elephants_3840x2160.jpg): for
// each photograph, 8 random 16:9 crops of 60-100% of its width, resized to
// 1920x1080 and encoded as JPEG at a quality drawn from 80..95 (fixed seed,
// in memory, nothing written to disk).
//
// Benchmarks (items are frames):
//   decode_only          OpenCV decode as compatible mode does it (baseline)
//   hash_only            PDQ of the decoded frame (512x512 sampling onward)
//   decode_hash_compat   the whole compatible pipeline
//   decode_hash_fast     fast mode (reduced-size luma JPEG decoding)
//   decode_hash_digests  compatible + MD5 + SHA-256, what `bantay hash` does
// After the runs it prints the ratios the PDQ issue sets targets for, and the
// deviation of fast-mode hashes from compatible ones (median and p99 bits).
//
// Run: build/bin/pdq_bench --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bantay/models/image_hasher.h"

namespace {

using bantay::models::HashOptions;
using bantay::models::ImageHasher;
using bantay::models::PdqHasher;
using bantay::models::PixelView;

// Meta's C++ reference on this machine class, from the PDQ issue (it cannot
// be built here: only Debian packages are allowed).
constexpr double kReferenceFramesPerSecond = 83.0;

struct Frames {
  std::vector<std::vector<uint8_t>> jpegs;
  std::vector<cv::Mat> decoded;
};

const Frames& GetFrames() {
  static const Frames frames = [] {
    Frames f;
    std::vector<std::string> sources;
    const std::string dir = "/usr/share/backgrounds/mate/";
    for (const auto& entry : std::filesystem::directory_iterator(dir + "nature")) {
      if (entry.path().extension() == ".jpg") sources.push_back(entry.path().string());
    }
    sources.push_back(dir + "abstract/Elephants_3840x2160.jpg");
    std::sort(sources.begin(), sources.end());
    std::mt19937 rng(20261123);
    for (const std::string& path : sources) {
      const cv::Mat photo = cv::imread(path, cv::IMREAD_COLOR);
      if (photo.empty()) continue;
      for (int k = 0; k < 8; ++k) {
        const int max_w = std::min(photo.cols, photo.rows * 16 / 9);
        const int w = max_w * (60 + static_cast<int>(rng() % 41)) / 100;
        const int h = w * 9 / 16;
        const int x = static_cast<int>(rng() % static_cast<unsigned>(photo.cols - w + 1));
        const int y = static_cast<int>(rng() % static_cast<unsigned>(photo.rows - h + 1));
        cv::Mat frame;
        cv::resize(photo(cv::Rect(x, y, w, h)), frame, cv::Size(1920, 1080), 0, 0,
                   w >= 1920 ? cv::INTER_AREA : cv::INTER_CUBIC);
        std::vector<uint8_t> jpeg;
        const int quality = 80 + static_cast<int>(rng() % 16);
        cv::imencode(".jpg", frame, jpeg, {cv::IMWRITE_JPEG_QUALITY, quality});
        f.jpegs.push_back(std::move(jpeg));
        f.decoded.push_back(cv::imdecode(f.jpegs.back(), cv::IMREAD_COLOR));
      }
    }
    if (f.jpegs.empty()) {
      std::fprintf(stderr, "pdq_bench: no photographs under %s (install mate-backgrounds)\n",
                   dir.c_str());
      std::exit(1);
    }
    return f;
  }();
  return frames;
}

void DecodeOnly(benchmark::State& state) {
  const Frames& frames = GetFrames();
  ImageHasher hasher({.digests = false});
  size_t i = 0;
  for (auto _ : state) {
    auto info = hasher.DecodeOnly(frames.jpegs[i++ % frames.jpegs.size()]);
    benchmark::DoNotOptimize(info);
  }
  state.SetItemsProcessed(state.iterations());
}

void HashOnly(benchmark::State& state) {
  const Frames& frames = GetFrames();
  PdqHasher hasher;
  size_t i = 0;
  for (auto _ : state) {
    const cv::Mat& m = frames.decoded[i++ % frames.decoded.size()];
    auto r = hasher.Hash(PixelView{m.data, m.cols, m.rows, 3, m.step[0], false});
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}

void DecodeHash(benchmark::State& state, HashOptions options) {
  const Frames& frames = GetFrames();
  ImageHasher hasher(options);
  size_t i = 0;
  for (auto _ : state) {
    auto r = hasher.Hash(frames.jpegs[i++ % frames.jpegs.size()]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(DecodeOnly)->Name("decode_only")->Unit(benchmark::kMillisecond);
BENCHMARK(HashOnly)->Name("hash_only")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(DecodeHash, compat, HashOptions{.digests = false})
    ->Name("decode_hash_compat")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(DecodeHash, fast, HashOptions{.fast = true, .digests = false})
    ->Name("decode_hash_fast")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(DecodeHash, digests, HashOptions{})
    ->Name("decode_hash_digests")->Unit(benchmark::kMillisecond);

// Keeps the median (or, without repetitions, the only) frames/s of each
// benchmark so that main can print the ratios.
class RateCollector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      const bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      if (!median && !single) continue;
      auto it = run.counters.find("items_per_second");
      if (it != run.counters.end()) rates[run.run_name.function_name] = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, double> rates;
};

void PrintDeviation(const char* label, HashOptions fast_options) {
  const Frames& frames = GetFrames();
  ImageHasher compat({.digests = false});
  ImageHasher fast(fast_options);
  std::vector<int> bits;
  int scale = 0;
  for (const auto& jpeg : frames.jpegs) {
    auto c = compat.Hash(jpeg);
    auto f = fast.Hash(jpeg);
    if (!c.ok() || !f.ok()) continue;
    bits.push_back(bantay::models::HammingDistance(c->pdq.hash, f->pdq.hash));
    scale = f->decode_scale;
  }
  std::sort(bits.begin(), bits.end());
  const auto pct = [&](double p) {
    return bits[std::min(bits.size() - 1, static_cast<size_t>(p * (bits.size() - 1) + 0.5))];
  };
  std::printf("fast-mode deviation %-22s scale 1/%d: median %d bits, p99 %d bits, max %d bits (%zu frames)\n",
              label, scale, pct(0.5), pct(0.99), bits.back(), bits.size());
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  GetFrames();
  RateCollector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  auto& r = reporter.rates;
  const double decode = r["decode_only"];
  std::printf("\n%zu frames of 1920x1080, one core, median frames/s\n", GetFrames().jpegs.size());
  std::printf("  decode only            %8.1f\n", decode);
  std::printf("  hash only              %8.1f\n", r["hash_only"]);
  std::printf("  decode+hash compatible %8.1f  = %.2fx decode-only (target >= 0.80)\n",
              r["decode_hash_compat"], r["decode_hash_compat"] / decode);
  std::printf("  decode+hash fast       %8.1f  = %.2fx the reference's %.0f/s (target >= 3.5)\n",
              r["decode_hash_fast"], r["decode_hash_fast"] / kReferenceFramesPerSecond,
              kReferenceFramesPerSecond);
  std::printf("  compatible + digests   %8.1f\n\n", r["decode_hash_digests"]);
  PrintDeviation("(min side 256)", {.fast = true, .digests = false});
  PrintDeviation("(min side 512)", {.fast = true, .digests = false, .fast_min_side = 512});
  PrintDeviation("(min side 128)", {.fast = true, .digests = false, .fast_min_side = 128});
  return 0;
}
