// PDQ: Meta's 256-bit perceptual image hash, computed as the published
// algorithm and its C++ reference do, so that Bantay's hashes interoperate
// with hash lists made by the reference, HMA and hotlines.
//
// Algorithm (https://github.com/facebook/ThreatExchange/blob/main/hashing/hashing.pdf):
//   1. images over 512 px on a side are first sampled to exactly 512x512 by
//      nearest neighbour (the reference's CImg resize);
//   2. float luminance Y = 0.299 R + 0.587 G + 0.114 B (grey images: Y = grey);
//   3. two passes of a Jarosz tent filter (box filters along rows then
//      columns, window ceil(dimension/128)), decimated to 64x64 at the
//      centres of 64x64 cells;
//   4. quality = sum of quantised gradients of the 64x64 image / 90, at most
//      100 (hashes under kPdqMinQuality are not to be matched);
//   5. a 16x16 DCT (frequencies 1..16 of a 64-point DCT-II on both axes);
//   6. bit 16*i + j is set when DCT[i][j] is greater than the median of the
//      256 coefficients.
// The 8 dihedral hashes (the hashes of the image rotated and flipped) follow
// from the same DCT by sign changes and transposition.
//
// Every floating-point operation is done in the reference's order (and
// without fused multiply-add, see CMakeLists.txt), so equal pixels give
// bit-identical hashes.
#ifndef BANTAY_MODELS_PDQ_H_
#define BANTAY_MODELS_PDQ_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "bantay/models/hash256.h"

namespace bantay::models {

// Hashes below this quality are noise to a matcher (the reference's rule).
inline constexpr int kPdqMinQuality = 50;
// Hamming distance at or under which two PDQ hashes count as a match.
inline constexpr int kPdqMatchThreshold = 31;
// Side above which an image is first sampled to kPdqResizeSide square.
inline constexpr int kPdqResizeSide = 512;

// The 8 dihedral transforms, in the reference's order.
enum class Dihedral {
  kOriginal,
  kRotate90,
  kRotate180,
  kRotate270,
  kFlipX,
  kFlipY,
  kFlipPlus1,
  kFlipMinus1,
};
inline constexpr int kDihedralCount = 8;

// "original", "rotate90", "rotate180", "rotate270", "flipx", "flipy",
// "flip_plus1", "flip_minus1".
std::string_view DihedralName(Dihedral d);

struct PdqResult {
  Hash256 hash;
  int quality = 0;
  // Filled only when dihedral hashes were asked for; [0] equals hash.
  std::array<Hash256, kDihedralCount> dihedral{};
  bool has_dihedral = false;

  bool low_quality() const { return quality < kPdqMinQuality; }
};

// The 8 dihedral variants of a hash when only the hash is known (no image):
// bits are moved as the DCT coefficients move, and inverted where the
// coefficient changes sign. This assumes the median of the coefficients is
// near zero, so it is an approximation: on the reference images it is a
// median of 4 bits (at most 30) from the variants computed from the image's
// DCT (PdqResult::dihedral), which are what a hasher should send.
std::array<Hash256, kDihedralCount> DihedralFromHash(const Hash256& hash);

// Interleaved 8-bit pixels. channels: 1 (grey), 3 or 4 (colour, the last
// channel of 4 ignored); colour order as OpenCV stores it (B, G, R) unless
// rgb is set.
struct PixelView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  int channels = 0;
  size_t row_stride = 0;  // bytes from one row to the next
  bool rgb = false;
};

// Computes PDQ hashes. Holds scratch buffers sized for the largest image it
// has seen (at most 512x512 floats after the reference's resize), so one
// hasher per thread hashes without allocating. Not thread-safe; cheap to
// create. Buffers holding luminance are overwritten after each hash.
class PdqHasher {
 public:
  PdqHasher();
  ~PdqHasher();
  PdqHasher(const PdqHasher&) = delete;
  PdqHasher& operator=(const PdqHasher&) = delete;

  // The reference's whole pipeline from decoded pixels (steps 1-6).
  // Images under 5 px on a side hash to all zeros with quality 0, as in the
  // reference.
  PdqResult Hash(const PixelView& pixels, bool dihedral = false);

  // An approximation for fast mode: pixels that are a reduced decoding of an
  // original_width x original_height image (a JPEG decoded at 1/2, 1/4 or
  // 1/8 in the DCT domain) are sampled on the reference's grid for the
  // original (512x512 for a large image), each grid point interpolating
  // (bilinear, for grey pixels) the reduced image at the original pixel the
  // reference would read, then hashed as the reference does. Not bit-compatible; the deviation is
  // measured in bench/pdq_bench.cc.
  PdqResult HashReduced(const PixelView& pixels, int original_width,
                        int original_height, bool dihedral = false);

  // Steps 3-6 on a luminance image given row-major (rows x cols), without
  // the 512 resize: the reference's pdqHash256FromFloatLuma.
  PdqResult HashLuma(const float* luma, int rows, int cols,
                     bool dihedral = false);

 private:
  // Filters kChunk (or fewer) rows of luminance along the rows: the first
  // Jarosz pass, written into after_rows_.
  void FirstRowPass(const float* const* rows_in, float* const* rows_out,
                    int count, int cols);
  // Steps 3 (from the first column pass) to 6, once after_rows_ is full.
  PdqResult Finish(int rows, int cols, bool dihedral);
  // Prepares the buffers and the per-position divisors for an image size
  // and box windows.
  void Prepare(int rows, int cols, int along_rows, int along_cols);
  // Overwrites every buffer that held (a blurred form of) the image.
  void WipeBuffers();
  // Steps 2-6 on the grid of pixels that row_source_ x col_source_ select
  // (interpolated with row_weight_ and col_weight_ when asked; grey only).
  PdqResult HashPixels(const PixelView& pixels, bool dihedral, bool interpolate);
  // Source row r of grey pixels interpolated at the grid columns.
  const float* Interpolated(const PixelView& pixels, int source_row, int cols);

  int cols_ = 0, along_rows_ = 0, along_cols_ = 0;
  std::vector<float> chunk_;        // luminance of a few rows
  std::vector<float> sums_;         // running sums of a few rows
  std::vector<float> after_rows_;   // rows x cols, after a row pass
  std::vector<float> after_cols_;   // rows x cols, after a column pass
  std::vector<float> sampled_;      // rows x 64 and 64 x 64 working space
  std::vector<float> row_divisor_;  // window size at each position of a row
  std::vector<int> row_source_;     // source row of each grid row
  std::vector<int> col_source_;     // source column of each grid column
  std::vector<int> col_offset_;     // byte offset of each grid column
  std::vector<float> row_weight_;   // interpolation weights (fast mode)
  std::vector<float> col_weight_;
  std::vector<float> interpolated_;  // two source rows interpolated along x
  int interpolated_row_[2] = {-1, -1};
};

}  // namespace bantay::models

#endif  // BANTAY_MODELS_PDQ_H_
