#include "bantay/models/pdq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

namespace bantay::models {
namespace {

constexpr int kMinHashableSide = 5;  // smaller images hash to zero (reference)
constexpr int kDownsampled = 64;
constexpr int kDctSide = 16;

// Rows 1..16 of the 64-point DCT-II matrix (row 0, the mean, is not used).
// The scale factor is rounded to float before the product, as in the
// reference, so the matrix is bit-identical to its.
struct DctMatrix {
  float d[kDctSide][kDownsampled];   // d[i][k]
  float dt[kDownsampled][kDctSide];  // transposed, dt[k][j] = d[j][k]
  DctMatrix() {
    const float scale = static_cast<float>(std::sqrt(2.0 / kDownsampled));
    for (int i = 0; i < kDctSide; ++i) {
      for (int k = 0; k < kDownsampled; ++k) {
        d[i][k] = static_cast<float>(
            scale * std::cos((std::numbers::pi / 2.0 / kDownsampled) * (i + 1) *
                             (2 * k + 1)));
        dt[k][i] = d[i][k];
      }
    }
  }
};
const DctMatrix& Dct() {
  static const DctMatrix matrix;
  return matrix;
}

int JaroszWindow(int old_side) {
  return (old_side + 2 * kDownsampled - 1) / (2 * kDownsampled);
}

// One box-filter pass along the first axis of an n x m row-major matrix,
// for all m columns at once (the inner loops run across columns and
// vectorise). Per column, the running sum is updated in exactly the order of
// the reference's box1DFloat: add the entering sample, then subtract the
// leaving one, then divide by the current window size.
void BoxAlongFirstAxis(const float* in, float* out, int n, int m, int window,
                       float* sums) {
  const int half = (window + 2) / 2;
  const int phase1 = half - 1;
  const int phase2 = window - half + 1;
  const int phase3 = n - window;
  const int phase4 = half - 1;
  std::fill(sums, sums + m, 0.0f);
  int ri = 0, li = 0, oi = 0, count = 0;
  for (int r = 0; r < phase1; ++r, ++ri, ++count) {
    const float* src = in + static_cast<size_t>(ri) * m;
    for (int j = 0; j < m; ++j) sums[j] += src[j];
  }
  for (int r = 0; r < phase2; ++r, ++ri, ++oi) {
    const float* src = in + static_cast<size_t>(ri) * m;
    float* dst = out + static_cast<size_t>(oi) * m;
    ++count;
    const float divisor = static_cast<float>(count);
    for (int j = 0; j < m; ++j) {
      sums[j] += src[j];
      dst[j] = sums[j] / divisor;
    }
  }
  const float full = static_cast<float>(count);
  for (int r = 0; r < phase3; ++r, ++ri, ++li, ++oi) {
    const float* add = in + static_cast<size_t>(ri) * m;
    const float* sub = in + static_cast<size_t>(li) * m;
    float* dst = out + static_cast<size_t>(oi) * m;
    for (int j = 0; j < m; ++j) {
      sums[j] += add[j];
      sums[j] -= sub[j];
      dst[j] = sums[j] / full;
    }
  }
  for (int r = 0; r < phase4; ++r, ++li, ++oi) {
    const float* sub = in + static_cast<size_t>(li) * m;
    float* dst = out + static_cast<size_t>(oi) * m;
    --count;
    const float divisor = static_cast<float>(count);
    for (int j = 0; j < m; ++j) {
      sums[j] -= sub[j];
      dst[j] = sums[j] / divisor;
    }
  }
}

// out (m x n) = transpose of in (n x m), in cache-sized tiles.
void Transpose(const float* in, float* out, int n, int m) {
  constexpr int kTile = 16;
  for (int i0 = 0; i0 < n; i0 += kTile) {
    const int i1 = std::min(n, i0 + kTile);
    for (int j0 = 0; j0 < m; j0 += kTile) {
      const int j1 = std::min(m, j0 + kTile);
      for (int i = i0; i < i1; ++i) {
        for (int j = j0; j < j1; ++j) {
          out[static_cast<size_t>(j) * n + i] = in[static_cast<size_t>(i) * m + j];
        }
      }
    }
  }
}

// Cell centres of the reference's decimateFloat, computed in double.
int DecimationIndex(int out_index, int in_side) {
  return static_cast<int>(((out_index + 0.5) * in_side) / kDownsampled);
}

int QualityMetric(const float (&a)[kDownsampled][kDownsampled]) {
  int gradient_sum = 0;
  auto quantised = [](float u, float v) {
    return std::abs(static_cast<int>(((u - v) * 100) / 255));
  };
  for (int i = 0; i < kDownsampled - 1; ++i) {
    for (int j = 0; j < kDownsampled; ++j) {
      gradient_sum += quantised(a[i][j], a[i + 1][j]);
    }
  }
  for (int i = 0; i < kDownsampled; ++i) {
    for (int j = 0; j < kDownsampled - 1; ++j) {
      gradient_sum += quantised(a[i][j], a[i][j + 1]);
    }
  }
  return std::min(gradient_sum / 90, 100);
}

// b = D a D^T, summing over k in ascending order as the reference does.
void Dct64To16(const float (&a)[kDownsampled][kDownsampled],
               float (&b)[kDctSide][kDctSide]) {
  const DctMatrix& dct = Dct();
  float t[kDctSide][kDownsampled];
  for (int i = 0; i < kDctSide; ++i) {
    float row[kDownsampled] = {};
    for (int k = 0; k < kDownsampled; ++k) {
      const float d = dct.d[i][k];
      for (int j = 0; j < kDownsampled; ++j) row[j] += d * a[k][j];
    }
    std::memcpy(t[i], row, sizeof(row));
  }
  for (int i = 0; i < kDctSide; ++i) {
    float row[kDctSide] = {};
    for (int k = 0; k < kDownsampled; ++k) {
      const float v = t[i][k];
      for (int j = 0; j < kDctSide; ++j) row[j] += v * dct.dt[k][j];
    }
    std::memcpy(b[i], row, sizeof(row));
  }
}

// Bit 16*i + j is set when b[i][j] exceeds the median. The reference uses
// Torben's selection, which for 256 values returns the 128th smallest.
Hash256 ThresholdAtMedian(const float (&b)[kDctSide][kDctSide]) {
  float sorted[kDctSide * kDctSide];
  std::memcpy(sorted, b, sizeof(sorted));
  std::nth_element(sorted, sorted + 127, sorted + kDctSide * kDctSide);
  const float median = sorted[127];
  Hash256 hash;
  for (int i = 0; i < kDctSide; ++i) {
    for (int j = 0; j < kDctSide; ++j) {
      if (b[i][j] > median) hash.SetBit(i * kDctSide + j);
    }
  }
  return hash;
}

// The DCT of a rotated or flipped image is the original DCT, transposed for
// the transforms that swap axes, with the sign of odd-frequency rows and/or
// columns changed. Frequencies are 1-based here (index 0 is frequency 1), so
// "odd frequency" is an even index.
Hash256 DihedralHash(Dihedral d, const float (&b)[kDctSide][kDctSide]) {
  bool transpose = false;
  auto sign = [d](int i, int j) -> float {
    switch (d) {
      case Dihedral::kOriginal:
      case Dihedral::kFlipPlus1:
        return 1.0f;
      case Dihedral::kRotate90:
      case Dihedral::kFlipY:
        return (j & 1) ? 1.0f : -1.0f;
      case Dihedral::kRotate270:
      case Dihedral::kFlipX:
        return (i & 1) ? 1.0f : -1.0f;
      case Dihedral::kRotate180:
      case Dihedral::kFlipMinus1:
        return ((i + j) & 1) ? -1.0f : 1.0f;
    }
    return 1.0f;
  };
  switch (d) {
    case Dihedral::kRotate90:
    case Dihedral::kRotate270:
    case Dihedral::kFlipPlus1:
    case Dihedral::kFlipMinus1:
      transpose = true;
      break;
    default:
      break;
  }
  float out[kDctSide][kDctSide];
  for (int i = 0; i < kDctSide; ++i) {
    for (int j = 0; j < kDctSide; ++j) {
      const float v = b[i][j] * sign(i, j);
      (transpose ? out[j][i] : out[i][j]) = v;
    }
  }
  return ThresholdAtMedian(out);
}

PdqResult FromDownsampled(const float (&a)[kDownsampled][kDownsampled],
                          bool dihedral) {
  PdqResult result;
  result.quality = QualityMetric(a);
  float b[kDctSide][kDctSide];
  Dct64To16(a, b);
  result.hash = ThresholdAtMedian(b);
  if (dihedral) {
    result.has_dihedral = true;
    result.dihedral[0] = result.hash;
    for (int v = 1; v < kDihedralCount; ++v) {
      result.dihedral[v] = DihedralHash(static_cast<Dihedral>(v), b);
    }
  }
  return result;
}

PdqResult TooSmall(bool dihedral) {
  PdqResult result;
  result.has_dihedral = dihedral;
  return result;
}

// Nearest-neighbour source index of CImg's resize (interpolation type 1),
// which the reference uses: floor(x * old / new).
int NearestSource(int x, int old_side, int new_side) {
  return static_cast<int>(static_cast<int64_t>(x) * old_side / new_side);
}

}  // namespace

std::string_view DihedralName(Dihedral d) {
  switch (d) {
    case Dihedral::kOriginal:
      return "original";
    case Dihedral::kRotate90:
      return "rotate90";
    case Dihedral::kRotate180:
      return "rotate180";
    case Dihedral::kRotate270:
      return "rotate270";
    case Dihedral::kFlipX:
      return "flipx";
    case Dihedral::kFlipY:
      return "flipy";
    case Dihedral::kFlipPlus1:
      return "flip_plus1";
    case Dihedral::kFlipMinus1:
      return "flip_minus1";
  }
  return "original";
}

PdqHasher::PdqHasher() = default;
PdqHasher::~PdqHasher() {
  explicit_bzero(luma_t_.data(), luma_t_.size() * sizeof(float));
  explicit_bzero(scratch_.data(), scratch_.size() * sizeof(float));
}

PdqResult PdqHasher::Hash(const PixelView& px, bool dihedral) {
  if (px.width < kMinHashableSide || px.height < kMinHashableSide) {
    return TooSmall(dihedral);
  }
  const bool resize = px.width > kPdqResizeSide || px.height > kPdqResizeSide;
  const int cols = resize ? kPdqResizeSide : px.width;
  const int rows = resize ? kPdqResizeSide : px.height;
  luma_t_.resize(static_cast<size_t>(rows) * cols);

  // Byte offset of each sampled column (cols <= 512 whether resized or not).
  int col_offset[kPdqResizeSide];
  for (int x = 0; x < cols; ++x) {
    col_offset[x] = (resize ? NearestSource(x, px.width, cols) : x) * px.channels;
  }
  // Luminance is written transposed (luma_t_[x * rows + y]) because the
  // first filter pass runs along rows.
  float* lt = luma_t_.data();
  for (int y = 0; y < rows; ++y) {
    const int src_y = resize ? NearestSource(y, px.height, rows) : y;
    const uint8_t* row = px.data + static_cast<size_t>(src_y) * px.row_stride;
    if (px.channels == 1) {
      for (int x = 0; x < cols; ++x) {
        const uint8_t* p = row + col_offset[x];
        lt[static_cast<size_t>(x) * rows + y] = static_cast<float>(*p);
      }
    } else {
      const int r = px.rgb ? 0 : 2;
      const int b = px.rgb ? 2 : 0;
      for (int x = 0; x < cols; ++x) {
        const uint8_t* p = row + col_offset[x];
        lt[static_cast<size_t>(x) * rows + y] =
            0.299f * static_cast<float>(p[r]) + 0.587f * static_cast<float>(p[1]) +
            0.114f * static_cast<float>(p[b]);
      }
    }
  }
  return HashTransposedLuma(rows, cols, dihedral);
}

PdqResult PdqHasher::HashLuma(const float* luma, int rows, int cols,
                              bool dihedral) {
  if (rows < kMinHashableSide || cols < kMinHashableSide) {
    return TooSmall(dihedral);
  }
  luma_t_.resize(static_cast<size_t>(rows) * cols);
  Transpose(luma, luma_t_.data(), rows, cols);
  return HashTransposedLuma(rows, cols, dihedral);
}

PdqResult PdqHasher::HashTransposedLuma(int rows, int cols, bool dihedral) {
  const size_t n = static_cast<size_t>(rows) * cols;
  scratch_.resize(n + static_cast<size_t>(std::max(rows, cols)));
  float* lt = luma_t_.data();
  float* work = scratch_.data();
  float* sums = scratch_.data() + n;
  float a[kDownsampled][kDownsampled];

  if (rows == kDownsampled && cols == kDownsampled) {
    // The reference takes a 64x64 luminance image as already downsampled.
    Transpose(lt, &a[0][0], cols, rows);
  } else {
    const int along_rows = JaroszWindow(cols);
    const int along_cols = JaroszWindow(rows);
    // Two passes of (rows, then columns). A pass along rows is a pass along
    // the first axis of the transposed image.
    BoxAlongFirstAxis(lt, work, cols, rows, along_rows, sums);  // (R1)^T
    Transpose(work, lt, cols, rows);                             // R1
    BoxAlongFirstAxis(lt, work, rows, cols, along_cols, sums);  // C1
    Transpose(work, lt, rows, cols);                             // C1^T
    BoxAlongFirstAxis(lt, work, cols, rows, along_rows, sums);  // (R2)^T
    Transpose(work, lt, cols, rows);                             // R2
    BoxAlongFirstAxis(lt, work, rows, cols, along_cols, sums);  // C2
    for (int i = 0; i < kDownsampled; ++i) {
      const float* row = work + static_cast<size_t>(DecimationIndex(i, rows)) * cols;
      for (int j = 0; j < kDownsampled; ++j) a[i][j] = row[DecimationIndex(j, cols)];
    }
  }
  PdqResult result = FromDownsampled(a, dihedral);
  // The buffers hold a blurred picture of the image: wipe them.
  explicit_bzero(lt, n * sizeof(float));
  explicit_bzero(work, n * sizeof(float));
  explicit_bzero(a, sizeof(a));
  return result;
}

}  // namespace bantay::models
