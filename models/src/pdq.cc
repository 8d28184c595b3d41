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

// Running box sums along each of R rows at once (R independent dependency
// chains keep the adder busy), in exactly the order of the reference's
// box1DFloat: add the entering sample, subtract the leaving one. sums[r][o]
// receives the sum that the reference divides for output o; the division is
// done afterwards, vectorised, by the same divisor (so bit-identical).
template <int R>
void RunningSums(const float* const* in, float* const* sums, int n, int window) {
  const int half = (window + 2) / 2;
  const int phase1 = half - 1;
  const int phase2 = window - half + 1;
  const int phase3 = n - window;
  const int phase4 = half - 1;
  float s[R] = {};
  int ri = 0, li = 0, oi = 0;
  for (int k = 0; k < phase1; ++k, ++ri) {
    for (int r = 0; r < R; ++r) s[r] += in[r][ri];
  }
  for (int k = 0; k < phase2; ++k, ++ri, ++oi) {
    for (int r = 0; r < R; ++r) {
      s[r] += in[r][ri];
      sums[r][oi] = s[r];
    }
  }
  for (int k = 0; k < phase3; ++k, ++ri, ++li, ++oi) {
    for (int r = 0; r < R; ++r) {
      s[r] += in[r][ri];
      s[r] -= in[r][li];
      sums[r][oi] = s[r];
    }
  }
  for (int k = 0; k < phase4; ++k, ++li, ++oi) {
    for (int r = 0; r < R; ++r) {
      s[r] -= in[r][li];
      sums[r][oi] = s[r];
    }
  }
}

// The current window size at each output position of box1DFloat.
void WindowDivisors(int n, int window, std::vector<float>* out) {
  const int half = (window + 2) / 2;
  out->resize(n);
  int count = half - 1, oi = 0;
  for (int k = 0; k < window - half + 1; ++k) (*out)[oi++] = static_cast<float>(++count);
  for (int k = 0; k < n - window; ++k) (*out)[oi++] = static_cast<float>(count);
  for (int k = 0; k < half - 1; ++k) (*out)[oi++] = static_cast<float>(--count);
}

constexpr int kChunk = 8;  // rows filtered together

void RunningSumsRows(const float* const* in, float* const* sums, int count,
                     int n, int window) {
  if (count == kChunk) {
    RunningSums<kChunk>(in, sums, n, window);
  } else {
    for (int r = 0; r < count; ++r) RunningSums<1>(in + r, sums + r, n, window);
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
bool Transposes(Dihedral d) {
  return d == Dihedral::kRotate90 || d == Dihedral::kRotate270 ||
         d == Dihedral::kFlipPlus1 || d == Dihedral::kFlipMinus1;
}
bool Negates(Dihedral d, int i, int j) {
  switch (d) {
    case Dihedral::kOriginal:
    case Dihedral::kFlipPlus1:
      return false;
    case Dihedral::kRotate90:
    case Dihedral::kFlipY:
      return !(j & 1);
    case Dihedral::kRotate270:
    case Dihedral::kFlipX:
      return !(i & 1);
    case Dihedral::kRotate180:
    case Dihedral::kFlipMinus1:
      return (i + j) & 1;
  }
  return false;
}

Hash256 DihedralHash(Dihedral d, const float (&b)[kDctSide][kDctSide]) {
  float out[kDctSide][kDctSide];
  for (int i = 0; i < kDctSide; ++i) {
    for (int j = 0; j < kDctSide; ++j) {
      const float v = Negates(d, i, j) ? -b[i][j] : b[i][j];
      (Transposes(d) ? out[j][i] : out[i][j]) = v;
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

std::array<Hash256, kDihedralCount> DihedralFromHash(const Hash256& hash) {
  std::array<Hash256, kDihedralCount> out;
  for (int v = 0; v < kDihedralCount; ++v) {
    const auto d = static_cast<Dihedral>(v);
    for (int i = 0; i < kDctSide; ++i) {
      for (int j = 0; j < kDctSide; ++j) {
        const bool bit = hash.GetBit(i * kDctSide + j) != Negates(d, i, j);
        if (bit) out[v].SetBit(Transposes(d) ? j * kDctSide + i : i * kDctSide + j);
      }
    }
  }
  return out;
}

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

PdqHasher::~PdqHasher() { WipeBuffers(); }

void PdqHasher::WipeBuffers() {
  for (std::vector<float>* buffer :
       {&chunk_, &sums_, &after_rows_, &after_cols_, &sampled_, &interpolated_}) {
    if (!buffer->empty()) {
      explicit_bzero(buffer->data(), buffer->size() * sizeof(float));
    }
  }
}

void PdqHasher::Prepare(int rows, int cols, int along_rows, int along_cols) {
  const size_t n = static_cast<size_t>(rows) * cols;
  chunk_.resize(static_cast<size_t>(kChunk) * cols);
  sums_.resize(static_cast<size_t>(kChunk) * cols);
  after_rows_.resize(n);
  after_cols_.resize(n);
  sampled_.resize(static_cast<size_t>(rows) * kDownsampled * 2 +
                  std::max({rows, cols, kDownsampled}));
  if (cols != cols_ || along_rows != along_rows_) {
    WindowDivisors(cols, along_rows, &row_divisor_);
    cols_ = cols;
    along_rows_ = along_rows;
  }
  along_cols_ = along_cols;
}

void PdqHasher::FirstRowPass(const float* const* rows_in,
                             float* const* rows_out, int count, int cols) {
  float* sums[kChunk] = {};
  for (int r = 0; r < count; ++r) sums[r] = sums_.data() + static_cast<size_t>(r) * cols;
  RunningSumsRows(rows_in, sums, count, cols, along_rows_);
  const float* divisor = row_divisor_.data();
  for (int r = 0; r < count; ++r) {
    float* out = rows_out[r];
    for (int j = 0; j < cols; ++j) out[j] = sums[r][j] / divisor[j];
  }
}

PdqResult PdqHasher::Hash(const PixelView& px, bool dihedral) {
  if (px.width < kMinHashableSide || px.height < kMinHashableSide) {
    return TooSmall(dihedral);
  }
  const bool resize = px.width > kPdqResizeSide || px.height > kPdqResizeSide;
  const int cols = resize ? kPdqResizeSide : px.width;
  const int rows = resize ? kPdqResizeSide : px.height;
  row_source_.resize(rows);
  col_source_.resize(cols);
  for (int y = 0; y < rows; ++y) {
    row_source_[y] = resize ? NearestSource(y, px.height, rows) : y;
  }
  for (int x = 0; x < cols; ++x) {
    col_source_[x] = resize ? NearestSource(x, px.width, cols) : x;
  }
  return HashPixels(px, dihedral, /*interpolate=*/false);
}

PdqResult PdqHasher::HashReduced(const PixelView& px, int original_width,
                                 int original_height, bool dihedral) {
  if (original_width < kMinHashableSide || original_height < kMinHashableSide ||
      px.width < 1 || px.height < 1) {
    return TooSmall(dihedral);
  }
  // The reference's sampling grid on the original image. Each grid point
  // takes the value of the reduced image, interpolated bilinearly, at the
  // centre of the original pixel that the reference would read there.
  const bool resize =
      original_width > kPdqResizeSide || original_height > kPdqResizeSide;
  const int cols = resize ? kPdqResizeSide : original_width;
  const int rows = resize ? kPdqResizeSide : original_height;
  auto place = [](int grid, int original, int reduced, std::vector<int>* source,
                  std::vector<float>* weight) {
    source->resize(grid);
    weight->resize(grid);
    for (int i = 0; i < grid; ++i) {
      const double in_original = NearestSource(i, original, grid) + 0.5;
      const double at = std::clamp(in_original * reduced / original - 0.5, 0.0,
                                   static_cast<double>(reduced - 1));
      const int low = std::min(static_cast<int>(at), std::max(0, reduced - 2));
      (*source)[i] = low;
      (*weight)[i] = static_cast<float>(at - low);
    }
  };
  place(rows, original_height, px.height, &row_source_, &row_weight_);
  place(cols, original_width, px.width, &col_source_, &col_weight_);
  return HashPixels(px, dihedral, /*interpolate=*/px.channels == 1 &&
                                      px.width > 1 && px.height > 1);
}

const float* PdqHasher::Interpolated(const PixelView& px, int source_row,
                                    int cols) {
  for (int k = 0; k < 2; ++k) {
    if (interpolated_row_[k] == source_row) {
      return interpolated_.data() + static_cast<size_t>(k) * cols;
    }
  }
  // Replace the older of the two (the one with the lower row).
  const int k = interpolated_row_[0] <= interpolated_row_[1] ? 0 : 1;
  interpolated_row_[k] = source_row;
  interpolated_.resize(static_cast<size_t>(2) * cols);
  float* out = interpolated_.data() + static_cast<size_t>(k) * cols;
  const uint8_t* row = px.data + static_cast<size_t>(source_row) * px.row_stride;
  for (int x = 0; x < cols; ++x) {
    const int c = col_source_[x];
    const float left = row[c];
    out[x] = left + col_weight_[x] * (static_cast<float>(row[c + 1]) - left);
  }
  return out;
}

PdqResult PdqHasher::HashPixels(const PixelView& px, bool dihedral,
                                bool interpolate) {
  const int rows = static_cast<int>(row_source_.size());
  const int cols = static_cast<int>(col_source_.size());
  Prepare(rows, cols, JaroszWindow(cols), JaroszWindow(rows));
  interpolated_row_[0] = interpolated_row_[1] = -1;

  col_offset_.resize(cols);
  for (int x = 0; x < cols; ++x) col_offset_[x] = col_source_[x] * px.channels;
  const int* col_offset = col_offset_.data();
  const bool no_filter = rows == kDownsampled && cols == kDownsampled;
  const int r_index = px.rgb ? 0 : 2;
  const int b_index = px.rgb ? 2 : 0;
  auto fill_luma = [&](int y, float* luma) {
    const uint8_t* row = px.data + static_cast<size_t>(row_source_[y]) * px.row_stride;
    if (interpolate) {
      // Rows of the reduced image interpolated along x, kept while the grid
      // rows keep reading them (the sources only move down).
      const float* top = Interpolated(px, row_source_[y], cols);
      const float* bottom = Interpolated(px, row_source_[y] + 1, cols);
      const float wy = row_weight_[y];
      for (int x = 0; x < cols; ++x) luma[x] = top[x] + wy * (bottom[x] - top[x]);
    } else if (px.channels == 1) {
      for (int x = 0; x < cols; ++x) luma[x] = static_cast<float>(row[col_offset[x]]);
    } else {
      for (int x = 0; x < cols; ++x) {
        const uint8_t* p = row + col_offset[x];
        luma[x] = 0.299f * static_cast<float>(p[r_index]) +
                  0.587f * static_cast<float>(p[1]) +
                  0.114f * static_cast<float>(p[b_index]);
      }
    }
  };
  auto SameRow = [&](int y) {
    return row_source_[y] == row_source_[y - 1] &&
           (!interpolate || row_weight_[y] == row_weight_[y - 1]);
  };
  // A grid row that reads the same source row as the one before it (when
  // a small image is sampled up) has the same first row pass: it is
  // computed once and copied.
  const float* rows_in[kChunk] = {};
  int chunk_rows[kChunk] = {};
  int count = 0;
  auto flush = [&] {
    if (count == 0) return;
    float* out_rows[kChunk] = {};
    for (int r = 0; r < count; ++r) {
      out_rows[r] = after_rows_.data() + static_cast<size_t>(chunk_rows[r]) * cols;
    }
    FirstRowPass(rows_in, out_rows, count, cols);
    count = 0;
  };
  for (int y = 0; y < rows; ++y) {
    if (y > 0 && SameRow(y)) continue;
    if (no_filter) {
      fill_luma(y, after_rows_.data() + static_cast<size_t>(y) * cols);
      continue;
    }
    float* luma = chunk_.data() + static_cast<size_t>(count) * cols;
    fill_luma(y, luma);
    rows_in[count] = luma;
    chunk_rows[count++] = y;
    if (count == kChunk) flush();
  }
  flush();
  for (int y = 1; y < rows; ++y) {
    if (!SameRow(y)) continue;
    std::memcpy(after_rows_.data() + static_cast<size_t>(y) * cols,
                after_rows_.data() + static_cast<size_t>(y - 1) * cols,
                sizeof(float) * cols);
  }
  return Finish(rows, cols, dihedral);
}

PdqResult PdqHasher::HashLuma(const float* luma, int rows, int cols,
                              bool dihedral) {
  if (rows < kMinHashableSide || cols < kMinHashableSide) {
    return TooSmall(dihedral);
  }
  Prepare(rows, cols, JaroszWindow(cols), JaroszWindow(rows));
  if (rows == kDownsampled && cols == kDownsampled) {
    std::memcpy(after_rows_.data(), luma, sizeof(float) * rows * cols);
  } else {
    for (int y0 = 0; y0 < rows; y0 += kChunk) {
      const int count = std::min(kChunk, rows - y0);
      const float* rows_in[kChunk] = {};
      float* rows_out[kChunk] = {};
      for (int r = 0; r < count; ++r) {
        rows_in[r] = luma + static_cast<size_t>(y0 + r) * cols;
        rows_out[r] = after_rows_.data() + static_cast<size_t>(y0 + r) * cols;
      }
      FirstRowPass(rows_in, rows_out, count, cols);
    }
  }
  return Finish(rows, cols, dihedral);
}

PdqResult PdqHasher::Finish(int rows, int cols, bool dihedral) {
  float a[kDownsampled][kDownsampled];
  if (rows == kDownsampled && cols == kDownsampled) {
    // The reference takes a 64x64 luminance image as already downsampled.
    std::memcpy(a, after_rows_.data(), sizeof(a));
  } else {
    const int along_rows = along_rows_;
    const int along_cols = along_cols_;
    float* col_sums = sampled_.data() + static_cast<size_t>(rows) * kDownsampled * 2;
    // First column pass, whole image.
    BoxAlongFirstAxis(after_rows_.data(), after_cols_.data(), rows, cols,
                      along_cols, col_sums);
    // Second row pass: running sums along whole rows, but divided and kept
    // only at the 64 columns the decimation reads.
    int sample_col[kDownsampled];
    for (int j = 0; j < kDownsampled; ++j) sample_col[j] = DecimationIndex(j, cols);
    float* rows_sampled = sampled_.data();  // rows x 64
    const float* divisor = row_divisor_.data();
    for (int y0 = 0; y0 < rows; y0 += kChunk) {
      const int count = std::min(kChunk, rows - y0);
      const float* rows_in[kChunk] = {};
      float* sums[kChunk] = {};
      for (int r = 0; r < count; ++r) {
        rows_in[r] = after_cols_.data() + static_cast<size_t>(y0 + r) * cols;
        sums[r] = sums_.data() + static_cast<size_t>(r) * cols;
      }
      RunningSumsRows(rows_in, sums, count, cols, along_rows);
      for (int r = 0; r < count; ++r) {
        float* out = rows_sampled + static_cast<size_t>(y0 + r) * kDownsampled;
        for (int j = 0; j < kDownsampled; ++j) {
          out[j] = sums[r][sample_col[j]] / divisor[sample_col[j]];
        }
      }
    }
    // Second column pass on those 64 columns, then the 64 sampled rows.
    float* cols_sampled = rows_sampled + static_cast<size_t>(rows) * kDownsampled;
    BoxAlongFirstAxis(rows_sampled, cols_sampled, rows, kDownsampled, along_cols,
                      col_sums);
    for (int i = 0; i < kDownsampled; ++i) {
      std::memcpy(a[i], cols_sampled + static_cast<size_t>(DecimationIndex(i, rows)) * kDownsampled,
                  sizeof(a[i]));
    }
  }
  PdqResult result = FromDownsampled(a, dihedral);
  // The buffers hold a blurred picture of the image: wipe them.
  WipeBuffers();
  explicit_bzero(a, sizeof(a));
  return result;
}

}  // namespace bantay::models
