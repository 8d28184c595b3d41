// `bantay scan` end to end on generated trees of JPEG files, against the
// single-core decode+hash rate of the same files measured in the same run.
//
// Workloads (generated once into --dir and reused when present; fixed seeds;
// every file differs from every other):
//   big    10,000 JPEGs of 1920x1080, 100 a directory (big/d000/f00000.jpg):
//          for file i, a random 16:9 crop of 60-100% of the width of one of
//          the photographs of Debian's mate-backgrounds package (nature/*.jpg
//          and Elephants_3840x2160.jpg, as bench/pdq_bench.cc uses them),
//          at a random position, resized to 1920x1080, JPEG quality 80..95.
//   small  100,000 JPEGs of 320x240..480x360 (4:3), at most 50,000 bytes
//          each (asserted), 100 a directory (small/d0000/f000000.jpg): a
//          random 4:3 crop of 25-100% of the width of one of those
//          photographs brought to 1280 pixels wide, quality 75..92 (lowered
//          until the file fits).
// The PDQ hash of every file is computed at generation and kept next to the
// tree (DIR/<set>.pdq), so that the number of matches a scan must report is
// known exactly.
//
// Each attempt (--reps, 3) measures, per set:
//   baseline  models::ImageHasher on one thread, compatible mode with MD5
//             and SHA-256 (what the scan does for an image), over the same
//             files read into memory first (outside the timed part; big: all
//             files, small: every --small-sample'th, 10): files/s and MB/s
//             of hashing alone.
//   in memory the same on N threads (--threads, 2), each with its own
//             hasher: what the machine's cores give together, the scan's
//             ceiling here (two decoders share caches and memory).
//   warm      `bantay scan DIR/<set> --index LIST --threads N --progress none
//             --report TMP` (the built binary next to this one, spawned),
//             with every file of the set in the page cache (read just
//             before): wall time from spawn to exit. LIST holds 1,000
//             random PDQ codes and 5 codes of files of the set with 0..16
//             bits flipped; the report is checked (one record a file, no
//             error, exactly the expected number of matches) and deleted.
//   cold      (big only, unless --no-cold) the same scan after the set's
//             files were dropped from the page cache with
//             posix_fadvise(POSIX_FADV_DONTNEED) (only these files: the
//             machine is shared; the residency left is printed, measured
//             with mincore), and before it a plain sequential read of the
//             cold files on one thread, for the disk's own rate.
// Reported: files/s, MB/s, the ratio scan / (N x baseline), the cores used
// by the measured work and by other processes, and medians over attempts.
//
// The machine is shared: a measurement during which other processes used
// more than --max-others cores (0.15; busy time from /proc/stat minus this
// process and its child) is discarded and repeated after --quiet-wait
// seconds (20), at most --attempts times (12), as bench/server_bench does.
//
// Run: build/bin/scan_bench --dir /tmp/bantay-scan-bench
//      build/bin/scan_bench --dir D --sets small --reps 5
// Flags: --dir D --sets big,small --reps N --threads N --no-cold
//        --big-files N --small-files N --small-sample K --max-others CORES
//        --attempts N --quiet-wait S --bantay PATH --gen-threads N
//        --generate-only
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bantay/models/hash256.h"
#include "bantay/models/image_hasher.h"
#include "bantay/models/pdq.h"
#include "bench_util.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using bantay::bench::Clock;
using bantay::bench::Join;
using bantay::bench::Median;
using bantay::bench::Seconds;
using bantay::models::Hash256;
using bantay::models::ImageHasher;

constexpr uint32_t kSeed = 20261123;
constexpr int64_t kSmallMaxBytes = 50'000;
constexpr int kRandomListEntries = 1000;
constexpr int kPlantedEntries = 5;
// Files per generation format: bump when the generated trees change, so
// that an old tree is not reused.
constexpr int kTreeVersion = 1;

struct Options {
  std::string dir;
  std::vector<std::string> sets = {"big", "small"};
  int reps = 3;
  int threads = 2;
  bool cold = true;
  int big_files = 10'000;
  int small_files = 100'000;
  int small_sample = 10;
  double max_others = 0.15;
  int attempts = 12;
  double quiet_wait = 20;
  std::string bantay;
  int gen_threads = 2;
  bool generate_only = false;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "scan_bench: %s\n", message.c_str());
  std::exit(1);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  o.bantay = (fs::read_symlink("/proc/self/exe").parent_path() / "bantay").string();
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      std::printf(
          "usage: scan_bench [--dir DIR] [--sets LIST] [--reps N] [--threads N]\n"
          "  [--big-files N] [--small-files N] [--small-sample N] [--max-others CORES]\n"
          "  [--attempts N] [--quiet-wait S] [--bantay PATH] [--gen-threads N]\n"
          "  [--no-cold] [--generate-only]\n"
          "(what it measures: the top of bench/scan_bench.cc)\n");
      std::exit(0);
    }
    if (flag == "--no-cold") {
      o.cold = false;
      continue;
    }
    if (flag == "--generate-only") {
      o.generate_only = true;
      continue;
    }
    if (i + 1 >= argc) Die("missing value after " + flag);
    const std::string value = argv[++i];
    if (flag == "--dir") {
      o.dir = value;
    } else if (flag == "--sets") {
      o.sets = Split(value);
    } else if (flag == "--reps") {
      o.reps = std::stoi(value);
    } else if (flag == "--threads") {
      o.threads = std::stoi(value);
    } else if (flag == "--big-files") {
      o.big_files = std::stoi(value);
    } else if (flag == "--small-files") {
      o.small_files = std::stoi(value);
    } else if (flag == "--small-sample") {
      o.small_sample = std::stoi(value);
    } else if (flag == "--max-others") {
      o.max_others = std::stod(value);
    } else if (flag == "--attempts") {
      o.attempts = std::stoi(value);
    } else if (flag == "--quiet-wait") {
      o.quiet_wait = std::stod(value);
    } else if (flag == "--bantay") {
      o.bantay = value;
    } else if (flag == "--gen-threads") {
      o.gen_threads = std::stoi(value);
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (o.dir.empty()) Die("--dir DIR is required (the trees are generated there)");
  for (const std::string& s : o.sets) {
    if (s != "big" && s != "small") Die("--sets takes big and/or small");
  }
  if (o.reps < 1 || o.threads < 1 || o.small_sample < 1 || o.attempts < 1) {
    Die("--reps, --threads, --small-sample and --attempts must be positive");
  }
  return o;
}

// ---------------------------------------------------------------------------
// The trees.

struct SetSpec {
  std::string name;
  int files = 0;
  int per_dir = 100;
  int dir_digits = 3;
  int file_digits = 5;

  std::string Root(const std::string& dir) const { return dir + "/" + name; }
  std::string Path(const std::string& dir, int i) const {
    char rel[64];
    std::snprintf(rel, sizeof rel, "/d%0*d/f%0*d.jpg", dir_digits, i / per_dir,
                  file_digits, i);
    return Root(dir) + rel;
  }
};

SetSpec Spec(const Options& o, const std::string& name) {
  if (name == "big") return {"big", o.big_files, 100, 3, 5};
  return {"small", o.small_files, 100, 4, 6};
}

struct Photos {
  std::vector<cv::Mat> full;   // as decoded
  std::vector<cv::Mat> small;  // brought to at most 1280 pixels wide
};

Photos LoadPhotos() {
  const std::string dir = "/usr/share/backgrounds/mate/";
  std::vector<std::string> sources;
  for (const auto& entry : fs::directory_iterator(dir + "nature")) {
    if (entry.path().extension() == ".jpg") sources.push_back(entry.path().string());
  }
  sources.push_back(dir + "abstract/Elephants_3840x2160.jpg");
  std::sort(sources.begin(), sources.end());
  Photos p;
  for (const std::string& path : sources) {
    cv::Mat photo = cv::imread(path, cv::IMREAD_COLOR);
    if (photo.empty()) continue;
    cv::Mat small = photo;
    if (photo.cols > 1280) {
      cv::resize(photo, small, cv::Size(1280, photo.rows * 1280 / photo.cols), 0, 0,
                 cv::INTER_AREA);
    }
    p.full.push_back(photo);
    p.small.push_back(small);
  }
  if (p.full.empty()) {
    Die("no photographs under " + dir + " (install mate-backgrounds)");
  }
  return p;
}

cv::Rect RandomCrop(std::mt19937& rng, const cv::Mat& photo, int aspect_w, int aspect_h,
                    int min_percent) {
  const int max_w = std::min(photo.cols, photo.rows * aspect_w / aspect_h);
  const int w = max_w * (min_percent + static_cast<int>(rng() % (101 - min_percent))) / 100;
  const int h = w * aspect_h / aspect_w;
  const int x = static_cast<int>(rng() % static_cast<unsigned>(photo.cols - w + 1));
  const int y = static_cast<int>(rng() % static_cast<unsigned>(photo.rows - h + 1));
  return {x, y, w, h};
}

std::vector<uint8_t> MakeFile(const SetSpec& spec, const Photos& photos, int i) {
  std::mt19937 rng(kSeed + static_cast<uint32_t>(i) * 7919u +
                   (spec.name == "big" ? 0u : 1'000'003u));
  std::vector<uint8_t> jpeg;
  if (spec.name == "big") {
    const cv::Mat& photo = photos.full[rng() % photos.full.size()];
    const cv::Rect crop = RandomCrop(rng, photo, 16, 9, 60);
    cv::Mat frame;
    cv::resize(photo(crop), frame, cv::Size(1920, 1080), 0, 0,
               crop.width >= 1920 ? cv::INTER_AREA : cv::INTER_CUBIC);
    const int quality = 80 + static_cast<int>(rng() % 16);
    cv::imencode(".jpg", frame, jpeg, {cv::IMWRITE_JPEG_QUALITY, quality});
    return jpeg;
  }
  const cv::Mat& photo = photos.small[rng() % photos.small.size()];
  const cv::Rect crop = RandomCrop(rng, photo, 4, 3, 25);
  const int w = 320 + static_cast<int>(rng() % 161);
  cv::Mat picture;
  cv::resize(photo(crop), picture, cv::Size(w, w * 3 / 4), 0, 0,
             crop.width >= w ? cv::INTER_AREA : cv::INTER_CUBIC);
  for (int quality = 75 + static_cast<int>(rng() % 18);; quality -= 8) {
    cv::imencode(".jpg", picture, jpeg, {cv::IMWRITE_JPEG_QUALITY, quality});
    if (static_cast<int64_t>(jpeg.size()) <= kSmallMaxBytes) break;
    if (quality < 20) Die("cannot bring a small JPEG under 50,000 bytes");
  }
  return jpeg;
}

struct FileHash {
  Hash256 pdq;
  int quality = 0;
};

std::string MarkerText(const SetSpec& spec) {
  return "version " + std::to_string(kTreeVersion) + " files " +
         std::to_string(spec.files) + " seed " + std::to_string(kSeed) + "\n";
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Generates the set unless DIR/<set>.done says it is there; returns the PDQ
// hash of every file, by index.
std::vector<FileHash> EnsureTree(const Options& o, const SetSpec& spec) {
  const std::string marker = o.dir + "/" + spec.name + ".done";
  const std::string hashes_path = o.dir + "/" + spec.name + ".pdq";
  if (ReadAll(marker) != MarkerText(spec)) {
    std::printf("generating %s: %d files into %s (%d threads) ...\n", spec.name.c_str(),
                spec.files, spec.Root(o.dir).c_str(), o.gen_threads);
    std::fflush(stdout);
    const auto start = Clock::now();
    fs::remove(marker);
    fs::remove_all(spec.Root(o.dir));
    for (int d = 0; d * spec.per_dir < spec.files; ++d) {
      fs::create_directories(fs::path(spec.Path(o.dir, d * spec.per_dir)).parent_path());
    }
    const Photos photos = LoadPhotos();
    std::vector<FileHash> hashes(static_cast<size_t>(spec.files));
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < o.gen_threads; ++t) {
      threads.emplace_back([&] {
        ImageHasher hasher({.digests = false});
        for (int i = next++; i < spec.files; i = next++) {
          const std::vector<uint8_t> jpeg = MakeFile(spec, photos, i);
          auto hashed = hasher.Hash(jpeg);
          if (!hashed.ok()) Die("a generated JPEG does not hash");
          hashes[static_cast<size_t>(i)] = {hashed->pdq.hash, hashed->pdq.quality};
          std::ofstream out(spec.Path(o.dir, i), std::ios::binary);
          out.write(reinterpret_cast<const char*>(jpeg.data()),
                    static_cast<std::streamsize>(jpeg.size()));
          if (!out) Die("cannot write " + spec.Path(o.dir, i));
          if (i % 5000 == 4999) {
            std::printf("  %d files, %.0f s\n", i + 1, Seconds(start));
            std::fflush(stdout);
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    std::ofstream out(hashes_path);
    for (const FileHash& h : hashes) out << h.pdq.ToHex() << " " << h.quality << "\n";
    out.close();
    sync();  // so that the pages are clean and can be dropped for cold runs
    std::ofstream(marker) << MarkerText(spec);
    std::printf("generated %s in %.0f s\n", spec.name.c_str(), Seconds(start));
  } else {
    std::printf("reusing %s (%s)\n", spec.Root(o.dir).c_str(), marker.c_str());
  }
  std::vector<FileHash> hashes;
  std::ifstream in(hashes_path);
  std::string hex;
  int quality = 0;
  while (in >> hex >> quality) {
    auto h = Hash256::FromHex(hex);
    if (!h.ok()) Die("bad line in " + hashes_path);
    hashes.push_back({*h, quality});
  }
  if (static_cast<int>(hashes.size()) != spec.files) Die(hashes_path + " is incomplete");
  return hashes;
}

struct TreeFiles {
  std::vector<std::string> paths;
  std::vector<int64_t> sizes;
  int64_t bytes = 0;
};

TreeFiles ListFiles(const Options& o, const SetSpec& spec) {
  TreeFiles t;
  for (int i = 0; i < spec.files; ++i) {
    t.paths.push_back(spec.Path(o.dir, i));
    struct stat st;
    if (stat(t.paths.back().c_str(), &st) != 0) Die("missing " + t.paths.back());
    if (spec.name == "small" && st.st_size > kSmallMaxBytes) {
      Die(t.paths.back() + " is over 50,000 bytes");
    }
    t.sizes.push_back(st.st_size);
    t.bytes += st.st_size;
  }
  return t;
}

// ---------------------------------------------------------------------------
// CPU accounting.

double Hz() { return static_cast<double>(sysconf(_SC_CLK_TCK)); }

// Busy time of all CPUs (/proc/stat), seconds.
double MachineBusy() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  double v[8] = {};  // user nice system idle iowait irq softirq steal
  for (double& x : v) in >> x;
  return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / Hz();
}

double RusageSeconds(const struct rusage& ru) {
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double ThreadCpu() {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double SelfCpu() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return RusageSeconds(ru);
}

struct Sample {
  double files_per_s = 0;
  double mb_per_s = 0;
  double own_cores = 0;  // cores used by the measured work
  double others = 0;     // cores used by other processes meanwhile
  double seconds = 0;
  double cpu_ms_per_file = 0;  // CPU time of the measured work a file
  std::string note;
};

int g_discarded = 0;
int g_noisy = 0;

// Runs prepare() then measure() until other processes stayed under
// max_others cores during measure().
template <typename Prepare, typename Measure>
Sample UntilQuiet(const Options& o, const std::string& what, Prepare prepare,
                  Measure measure) {
  for (int attempt = 1;; ++attempt) {
    prepare();
    Sample s = measure();
    if (s.others <= o.max_others) return s;
    if (attempt >= o.attempts) {
      ++g_noisy;
      std::printf("    (%s kept after %d attempts although other processes used %.2f cores)\n",
                  what.c_str(), attempt, s.others);
      s.note = "noisy";
      return s;
    }
    ++g_discarded;
    std::printf("    (%s discarded: other processes used %.2f cores; again in %.0f s)\n",
                what.c_str(), s.others, o.quiet_wait);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::duration<double>(o.quiet_wait));
  }
}

// ---------------------------------------------------------------------------
// The measurements.

bool ReadFile(const std::string& path, std::vector<uint8_t>* out) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return false;
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out->size()) {
    const ssize_t n = read(fd, out->data() + done, out->size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  out->resize(done);
  return true;
}

// Decode+hash rate on `threads` threads (each with its own hasher) over the
// files with index % step == 0, read into memory in batches outside the
// timed part.
Sample Baseline(const TreeFiles& files, const std::vector<FileHash>& expected, int step,
                int threads) {
  const double busy0 = MachineBusy(), self0 = SelfCpu();
  const auto start = Clock::now();
  std::vector<std::unique_ptr<ImageHasher>> hashers;
  for (int t = 0; t < threads; ++t) {
    // Compatible mode with MD5 and SHA-256: as the scan.
    hashers.push_back(std::make_unique<ImageHasher>(bantay::models::HashOptions{}));
  }
  constexpr int64_t kBatchBytes = int64_t{64} << 20;
  std::vector<std::vector<uint8_t>> batch;
  std::vector<size_t> batch_index;
  double hashing = 0, hashing_cpu = 0;
  int64_t files_done = 0, bytes_done = 0;
  size_t i = 0;
  const size_t n = files.paths.size();
  while (i < n) {
    batch.clear();
    batch_index.clear();
    int64_t batch_bytes = 0;
    for (; i < n && batch_bytes < kBatchBytes; i += static_cast<size_t>(step)) {
      batch.emplace_back();
      if (!ReadFile(files.paths[i], &batch.back())) Die("cannot read " + files.paths[i]);
      batch_index.push_back(i);
      batch_bytes += static_cast<int64_t>(batch.back().size());
    }
    const auto t0 = Clock::now();
    std::atomic<size_t> next{0};
    std::vector<double> cpu(static_cast<size_t>(threads));
    auto hash = [&](int t) {
      const double cpu0 = ThreadCpu();
      for (size_t k = next++; k < batch.size(); k = next++) {
        auto r = hashers[static_cast<size_t>(t)]->Hash(batch[k]);
        if (!r.ok() || r->pdq.hash != expected[batch_index[k]].pdq) {
          Die("baseline: " + files.paths[batch_index[k]] + " does not hash as generated");
        }
      }
      cpu[static_cast<size_t>(t)] = ThreadCpu() - cpu0;
    };
    if (threads == 1) {
      hash(0);
    } else {
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t) pool.emplace_back(hash, t);
      for (auto& th : pool) th.join();
    }
    for (double c : cpu) hashing_cpu += c;
    hashing += Seconds(t0);
    files_done += static_cast<int64_t>(batch.size());
    bytes_done += batch_bytes;
  }
  const double wall = Seconds(start);
  Sample s;
  s.seconds = hashing;
  s.files_per_s = static_cast<double>(files_done) / hashing;
  s.mb_per_s = static_cast<double>(bytes_done) / 1e6 / hashing;
  s.cpu_ms_per_file = 1e3 * hashing_cpu / static_cast<double>(files_done);
  s.own_cores = (SelfCpu() - self0) / wall;
  s.others = std::max(0.0, (MachineBusy() - busy0) / wall - s.own_cores);
  return s;
}

void WarmUp(const TreeFiles& files) {
  std::vector<uint8_t> buffer;
  for (const std::string& p : files.paths) ReadFile(p, &buffer);
}

void Evict(const TreeFiles& files) {
  for (const std::string& p : files.paths) {
    const int fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

// Fraction of the pages of every 50th file that are in the page cache.
double Residency(const TreeFiles& files) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t resident = 0, total = 0;
  std::vector<unsigned char> vec;
  for (size_t i = 0; i < files.paths.size(); i += 50) {
    const int fd = open(files.paths[i].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const size_t size = static_cast<size_t>(files.sizes[i]);
    void* map = size > 0 ? mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED) continue;
    const size_t pages = (size + page - 1) / page;
    vec.resize(pages);
    if (mincore(map, size, vec.data()) == 0) {
      for (unsigned char c : vec) resident += c & 1;
      total += pages;
    }
    munmap(map, size);
  }
  return total > 0 ? static_cast<double>(resident) / static_cast<double>(total) : 0;
}

// One thread reading every file once (after Evict: the disk's own rate).
Sample ReadRate(const TreeFiles& files) {
  const double busy0 = MachineBusy(), self0 = SelfCpu();
  const auto start = Clock::now();
  std::vector<uint8_t> buffer;
  int64_t bytes = 0;
  for (const std::string& p : files.paths) {
    ReadFile(p, &buffer);
    bytes += static_cast<int64_t>(buffer.size());
  }
  const double wall = Seconds(start);
  Sample s;
  s.seconds = wall;
  s.files_per_s = static_cast<double>(files.paths.size()) / wall;
  s.mb_per_s = static_cast<double>(bytes) / 1e6 / wall;
  s.cpu_ms_per_file = 1e3 * (SelfCpu() - self0) / static_cast<double>(files.paths.size());
  s.own_cores = (SelfCpu() - self0) / wall;
  s.others = std::max(0.0, (MachineBusy() - busy0) / wall - s.own_cores);
  return s;
}

// The hash list for a set: random codes, and codes of a few files of the
// set with 0..16 bits flipped. Returns how many files of the set it
// matches (by brute force over the generation's hashes).
int64_t WriteList(const std::string& path, const std::vector<FileHash>& hashes) {
  std::mt19937_64 rng(kSeed);
  std::vector<Hash256> list;
  for (int k = 0; k < kRandomListEntries; ++k) {
    std::array<uint8_t, 32> bytes;
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    list.emplace_back(bytes);
  }
  for (int k = 0; k < kPlantedEntries; ++k) {
    size_t i;
    do {
      i = rng() % hashes.size();
    } while (hashes[i].quality < bantay::models::kPdqMinQuality);
    std::array<uint8_t, 32> bytes = hashes[i].pdq.bytes();
    for (int flip = 0; flip < 4 * k; ++flip) {
      const uint64_t bit = rng() % 256;
      bytes[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    }
    list.emplace_back(bytes);
  }
  std::ofstream out(path);
  out << "# scan_bench: random codes and planted near-duplicates\n";
  for (size_t k = 0; k < list.size(); ++k) {
    out << "pdq " << list[k].ToHex() << " ref-" << k << "\n";
  }
  if (!out) Die("cannot write " + path);
  int64_t matches = 0;
  for (const FileHash& h : hashes) {
    if (h.quality < bantay::models::kPdqMinQuality) continue;
    for (const Hash256& code : list) {
      if (bantay::models::HammingDistance(h.pdq, code) <= bantay::models::kPdqMatchThreshold) {
        ++matches;
        break;
      }
    }
  }
  return matches;
}

struct ScanCheck {
  int64_t records = 0, matches = 0, errors = 0;
};

ScanCheck CheckReport(const std::string& path) {
  ScanCheck c;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // The report's provenance records ("scan" first, "end" last) are not
    // entries.
    if (line.starts_with("{\"record\":")) continue;
    ++c.records;
    if (line.find("\"verdict\":\"match\"") != std::string::npos) ++c.matches;
    if (line.find("\"error\":") != std::string::npos) ++c.errors;
  }
  return c;
}

// Spawns the scan, waits for it, checks the report and deletes it.
Sample RunScan(const Options& o, const std::string& tree, const std::string& list,
               const std::string& tmp, const TreeFiles& files, int64_t expected_matches) {
  const std::string report = tmp + "/report.jsonl";
  const std::string err = tmp + "/stderr.txt";
  fs::remove(report);
  const std::string threads = std::to_string(o.threads);
  std::vector<std::string> args = {o.bantay, "scan",    tree,      "--index",  list,
                                   "--threads", threads, "--progress", "none", "--report",
                                   report};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const double busy0 = MachineBusy(), self0 = SelfCpu();
  const auto start = Clock::now();
  pid_t pid;
  if (posix_spawn(&pid, o.bantay.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
    Die("cannot start " + o.bantay);
  }
  int status = 0;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  const double wall = Seconds(start);
  const double busy = MachineBusy() - busy0;
  const double self = SelfCpu() - self0;
  posix_spawn_file_actions_destroy(&actions);
  const ScanCheck check = CheckReport(report);
  fs::remove(report);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    Die("the scan failed (status " + std::to_string(status) + "): " + ReadAll(err));
  }
  if (check.records != static_cast<int64_t>(files.paths.size()) || check.errors != 0 ||
      check.matches != expected_matches) {
    Die("wrong report: " + std::to_string(check.records) + " records (want " +
        std::to_string(files.paths.size()) + "), " + std::to_string(check.errors) +
        " errors, " + std::to_string(check.matches) + " matches (want " +
        std::to_string(expected_matches) + ")");
  }
  Sample s;
  s.seconds = wall;
  s.files_per_s = static_cast<double>(files.paths.size()) / wall;
  s.mb_per_s = static_cast<double>(files.bytes) / 1e6 / wall;
  s.own_cores = RusageSeconds(ru) / wall;
  s.cpu_ms_per_file = 1e3 * RusageSeconds(ru) / static_cast<double>(files.paths.size());
  s.others = std::max(0.0, (busy - self) / wall - s.own_cores);
  return s;
}

std::string Describe(const Sample& s) {
  char text[200];
  std::snprintf(text, sizeof text,
                "%8.1f files/s %7.1f MB/s  (%.1f s; %.3f CPU ms a file; cores: own %.2f, "
                "others %.2f)%s",
                s.files_per_s, s.mb_per_s, s.seconds, s.cpu_ms_per_file, s.own_cores, s.others,
                s.note.empty() ? "" : " NOISY");
  return text;
}

void RunSet(const Options& o, const std::string& name, const std::string& tmp) {
  const SetSpec spec = Spec(o, name);
  const std::vector<FileHash> hashes = EnsureTree(o, spec);
  const TreeFiles files = ListFiles(o, spec);
  const std::string list = tmp + "/" + name + "-list.txt";
  const int64_t expected = WriteList(list, hashes);
  const int step = name == "small" ? o.small_sample : 1;
  const bool cold = o.cold && name == "big";
  std::printf(
      "\n%s: %zu JPEG files, %.1f MB (mean %.1f KB, max %.1f KB), %lld must match; "
      "scan --threads %d; baseline over every %d%s file\n",
      name.c_str(), files.paths.size(), static_cast<double>(files.bytes) / 1e6,
      static_cast<double>(files.bytes) / 1e3 / static_cast<double>(files.paths.size()),
      static_cast<double>(*std::max_element(files.sizes.begin(), files.sizes.end())) / 1e3,
      static_cast<long long>(expected), o.threads, step, step == 1 ? "" : "th");
  std::fflush(stdout);

  std::vector<double> base_rate, base_mb, warm_rate, warm_mb, warm_ratio, warm_cores;
  std::vector<double> cold_rate, cold_mb, cold_ratio, cold_cores, disk_mb, others;
  std::vector<double> base_cpu, warm_cpu, cold_cpu;
  std::vector<double> multi_rate, multi_ratio, warm_of_multi;
  for (int rep = 1; rep <= o.reps; ++rep) {
    const Sample base = UntilQuiet(o, "baseline", [] {}, [&] {
      return Baseline(files, hashes, step, 1);
    });
    std::printf("  rep %d baseline 1 core  %s\n", rep, Describe(base).c_str());
    std::fflush(stdout);
    const Sample multi = UntilQuiet(o, "in-memory run", [] {}, [&] {
      return Baseline(files, hashes, step, o.threads);
    });
    std::printf("  rep %d in memory %d thr %s = %.3fx\n", rep, o.threads,
                Describe(multi).c_str(), multi.files_per_s / (o.threads * base.files_per_s));
    std::fflush(stdout);
    const Sample warm = UntilQuiet(o, "warm scan", [&] { WarmUp(files); }, [&] {
      return RunScan(o, spec.Root(o.dir), list, tmp, files, expected);
    });
    const double wr = warm.files_per_s / (o.threads * base.files_per_s);
    std::printf("  rep %d warm scan       %s = %.3fx\n", rep, Describe(warm).c_str(), wr);
    std::fflush(stdout);
    base_rate.push_back(base.files_per_s);
    base_mb.push_back(base.mb_per_s);
    warm_rate.push_back(warm.files_per_s);
    warm_mb.push_back(warm.mb_per_s);
    warm_ratio.push_back(wr);
    warm_cores.push_back(warm.own_cores);
    base_cpu.push_back(base.cpu_ms_per_file);
    multi_rate.push_back(multi.files_per_s);
    multi_ratio.push_back(multi.files_per_s / (o.threads * base.files_per_s));
    warm_of_multi.push_back(warm.files_per_s / multi.files_per_s);
    warm_cpu.push_back(warm.cpu_ms_per_file);
    others.push_back(std::max({base.others, multi.others, warm.others}));
    if (!cold) continue;
    double residency = 0;
    const Sample disk = UntilQuiet(o, "cold read", [&] { Evict(files); }, [&] {
      return ReadRate(files);
    });
    std::printf("  rep %d cold read 1 thr %s\n", rep, Describe(disk).c_str());
    const Sample cs = UntilQuiet(
        o, "cold scan",
        [&] {
          Evict(files);
          residency = Residency(files);
        },
        [&] { return RunScan(o, spec.Root(o.dir), list, tmp, files, expected); });
    const double cr = cs.files_per_s / (o.threads * base.files_per_s);
    std::printf("  rep %d cold scan       %s = %.3fx (%.1f%% cached before)\n", rep,
                Describe(cs).c_str(), cr, 100 * residency);
    std::fflush(stdout);
    disk_mb.push_back(disk.mb_per_s);
    cold_rate.push_back(cs.files_per_s);
    cold_mb.push_back(cs.mb_per_s);
    cold_ratio.push_back(cr);
    cold_cores.push_back(cs.own_cores);
    cold_cpu.push_back(cs.cpu_ms_per_file);
    others.back() = std::max({others.back(), disk.others, cs.others});
  }

  std::printf("\n%s, medians of %d repetitions [each one]:\n", name.c_str(), o.reps);
  std::printf("  baseline, 1 core, in memory: %.1f files/s, %.1f MB/s [%s]\n", Median(base_rate),
              Median(base_mb), Join(base_rate, "%.1f").c_str());
  std::printf("  in memory, %d threads:        %.1f files/s [%s] = %.3fx (%d x baseline)\n",
              o.threads, Median(multi_rate), Join(multi_rate, "%.1f").c_str(),
              Median(multi_ratio), o.threads);
  std::printf("  scan, warm page cache:       %.1f files/s, %.1f MB/s [%s], %.2f cores\n",
              Median(warm_rate), Median(warm_mb), Join(warm_rate, "%.1f").c_str(),
              Median(warm_cores));
  std::printf("    scan / (%d x baseline):    %.3f [%s]\n", o.threads, Median(warm_ratio),
              Join(warm_ratio, "%.3f").c_str());
  std::printf("    scan / in memory %d thr:    %.3f [%s]\n", o.threads, Median(warm_of_multi),
              Join(warm_of_multi, "%.3f").c_str());
  if (cold) {
    std::printf("  one-thread read, cold:       %.1f MB/s [%s]\n", Median(disk_mb),
                Join(disk_mb, "%.1f").c_str());
    std::printf("  scan, cold page cache:       %.1f files/s, %.1f MB/s [%s], %.2f cores\n",
                Median(cold_rate), Median(cold_mb), Join(cold_rate, "%.1f").c_str(),
                Median(cold_cores));
    std::printf("    scan / (%d x baseline):    %.3f [%s]\n", o.threads, Median(cold_ratio),
                Join(cold_ratio, "%.3f").c_str());
  }
  std::printf("  CPU ms a file: baseline %.3f [%s], warm scan %.3f [%s] = %.3fx\n",
              Median(base_cpu), Join(base_cpu, "%.3f").c_str(), Median(warm_cpu),
              Join(warm_cpu, "%.3f").c_str(), Median(warm_cpu) / Median(base_cpu));
  if (cold) {
    std::printf("                 cold scan %.3f [%s]\n", Median(cold_cpu),
                Join(cold_cpu, "%.3f").c_str());
  }
  std::printf("  other processes, most in a repetition: [%s] cores\n",
              Join(others, "%.2f").c_str());
  if (name == "big") {
    std::printf("  target scan >= 0.90 x (%d x baseline): warm %s%s\n", o.threads,
                Median(warm_ratio) >= 0.9 ? "met" : "NOT MET",
                cold ? (Median(cold_ratio) >= 0.9 ? ", cold met" : ", cold NOT MET") : "");
  } else {
    std::printf("  target >= 2,000 files/s on 2 cores: %s\n",
                Median(warm_rate) >= 2000 ? "met" : "NOT MET");
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseOptions(argc, argv);
  fs::create_directories(o.dir);
  if (access(o.bantay.c_str(), X_OK) != 0) Die("no executable " + o.bantay);
  char tmp_template[] = "/tmp/scan_bench-XXXXXX";
  if (mkdtemp(tmp_template) == nullptr) Die("cannot create a temporary directory");
  static const std::string tmp = tmp_template;
  std::atexit([] { fs::remove_all(tmp); });  // also after Die
  std::printf("scan_bench: %s, trees in %s, %d repetitions, others <= %.2f cores\n",
              o.bantay.c_str(), o.dir.c_str(), o.reps, o.max_others);
  for (const std::string& name : o.sets) {
    if (o.generate_only) {
      EnsureTree(o, Spec(o, name));
    } else {
      RunSet(o, name, tmp);
    }
  }
  std::printf("\nmeasurements discarded because the machine was busy: %d; kept although "
              "noisy: %d\n",
              g_discarded, g_noisy);
  return 0;
}
