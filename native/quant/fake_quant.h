// Weight fake quantization for the calibration searches (src/quant/search.ts): the dequantized
// values a quantized linear computes with, bit for bit as src/quant/numerics.ts defines them.
#pragma once

#include <cstdint>

namespace inferjit {

// Formats of numerics.ts's WeightFormat, in this order.
enum FakeQuantFormat { kFqInt8 = 0, kFqInt4 = 1, kFqFp8 = 2 };

// out[n, k] = Q(w[n, k] · colScale[k]) for a row-major [N, K] weight (colScale null: 1): the
// product rounded to f32, then per output row (int8, fp8) or per `group` values of a row (int4)
// an absmax scale fround(amax / {127, 7, 448}) and each value's code (int8: clamp(round half away,
// ±127); int4: clamp(round half away, −8, 7); fp8: E4M3 round to nearest even, ±448) times the
// scale, rounded to f32. Each output is optional (null: not written): out [N, K] the dequantized
// values, codes [N, K] the codes (fp8: the E4M3 value of w / scale, as numerics.ts weightCode),
// scales [N, K / group] (int4) or [N]. Rows run on the thread pool.
// One weight's code, as numerics.ts weightCode: 0 where the scale is not positive.
double fakeQuantCode(double x, double scale, int format);

void fakeQuantWeight(const float* w, const double* colScale, int64_t N, int64_t K, int format, int64_t group, float* out, float* codes,
                     float* scales);

}  // namespace inferjit
