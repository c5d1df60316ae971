// Reduced-precision GEMMs: bf16 products with fp32 accumulation (AVX512_BF16 vdpbf16ps, or AMX-BF16
// tiles), and fp16 weight storage with fp32 compute (F16C conversion while the B panel is read).
// Both take fp32 activations and write fp32 outputs through the same Epilogue as the fp32 GEMM.
//
// Packed-bf16 B layout (PackedBf16): N is cut into panels of kBf16NR = 32 columns and K is padded
// with zeros to Kp = roundUp(K, 32). Panel p holds Kp/2 "pair rows"; pair row q holds, for each of
// the 32 columns, the two bf16 values B[2q][j], B[2q+1][j] next to each other:
//     data[p·Kp·32 + q·64 + 2j + (k & 1)] = bf16(B[k][p·32 + j]),   q = k / 2,
// i.e. [panel][K/2][32 cols][2]. This is what vdpbf16ps consumes (a zmm of 16 columns × 1 pair),
// and it is also AMX's VNNI layout: a 16-column B tile is 16 pair rows at a stride of 128 bytes, so
// one packed weight serves both kernels.
//
// Packed-f16 B layout (PackedF16): the fp32 GEMM's panel layout with f16 elements,
//     data[(p·K + k)·32 + j] = f16(B[k][p·32 + j]), zero-padded past N.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "gemm.h"

namespace inferjit {

constexpr int kBf16NR = 32;     // columns per packed panel (2 zmm of fp32 accumulators)
constexpr int kBf16KAlign = 32;  // packed K is a multiple of this (an AMX tile's depth in bf16)

// Which bf16 kernel runs. kAuto resolves to AMX when the CPU and OS allow it, else AVX512_BF16.
enum class Bf16Kernel : int { kAuto = 0, kAvx512 = 1, kAmx = 2 };

struct Bf16Caps {
  bool avx512f = false;     // AVX-512 F/BW/DQ/VL with OS zmm state (needed by every path here)
  bool avx512bf16 = false;  // vdpbf16ps / vcvtne2ps2bf16
  bool amxBf16 = false;     // AMX-TILE + AMX-BF16 in cpuid
  bool amxUsable = false;   // ... and the kernel granted this process the tile state
  bool f16c = false;
};
// Probed once (cpuid/xgetbv; the AMX permission request happens here, once per process).
const Bf16Caps& bf16Caps();

// The kernel INFERJIT_BF16_KERNEL (avx512 | amx | auto, default auto) selects on this CPU. Returns
// false and sets `why` (naming the missing instruction set) when the requested one cannot run.
bool resolveBf16Kernel(Bf16Kernel requested, Bf16Kernel* out, std::string* why);
Bf16Kernel bf16KernelFromEnv();
const char* bf16KernelName(Bf16Kernel k);

// One timing of the bf16 dot-product GEMM against the fp32 GEMM on the same compute-bound shape
// (M×K×N, all threads, packed weights, best of a few alternating rounds; a few ms in all). Some
// AVX512_BF16 cores issue vdpbf16ps at half the FMA rate (measured on an Emerald Rapids Xeon: one
// zmm vdpbf16ps per 2 cycles against two vfmadd231ps per cycle, so bf16 GEMMs ran at 0.5-0.6× the
// fp32 GEMM), others at the same rate as FMA (Zen 5: bf16 1.1-2.3× fp32); which one this CPU is can
// only be measured. `kernel` must be a resolved kernel. Not cached here: the caller caches it.
struct Bf16SpeedProbe {
  int64_t M = 0, K = 0, N = 0;
  double bf16Ms = 0, fp32Ms = 0;  // best round of each
};
Bf16SpeedProbe probeBf16Speed(Bf16Kernel kernel, int64_t M, int64_t K, int64_t N, int rounds);

// Element type of a source matrix being packed.
enum class SrcType : int { kF32 = 0, kBf16 = 1, kF16 = 2 };

struct PackedBf16 {
  int64_t K = 0, N = 0, Kp = 0, panels = 0;
  uint16_t* data = nullptr;
  ~PackedBf16();
  int64_t panelStride() const { return Kp * kBf16NR; }  // in bf16 elements
  size_t bytes() const { return static_cast<size_t>(panels * Kp * kBf16NR) * sizeof(uint16_t); }
};

struct PackedF16 {
  int64_t K = 0, N = 0, panels = 0;
  uint16_t* data = nullptr;
  ~PackedF16();
  size_t bytes() const { return static_cast<size_t>(panels * K * kBf16NR) * sizeof(uint16_t); }
};

// Packs B ([K, N] row-major with leading dim ldb, or when transB stored as [N, K]) of element type
// `type` into the bf16 layout above; fp32 and f16 sources are rounded to nearest-even bf16.
// Requires AVX-512F (the caller checks bf16Caps()). Multithreaded over panels.
std::unique_ptr<PackedBf16> packBBf16(const void* b, SrcType type, int64_t ldb, bool transB, int64_t K, int64_t N);
// One panel p of the layout above into dst (Kp·32 elements). Single-threaded.
void packBBf16Panel(const void* b, SrcType type, int64_t ldb, bool transB, int64_t K, int64_t N, int64_t p, uint16_t* dst);

// Packs B (fp32 or f16 source) into the f16 layout above (fp32 is rounded to nearest-even f16).
std::unique_ptr<PackedF16> packBF16(const void* b, SrcType type, int64_t ldb, bool transB, int64_t K, int64_t N);

// C[M, N] (ldc) = epi(bf16(op(A)) · B) with fp32 accumulation, for every batch (B shared by all
// batches; batch.bOffsets is ignored). A is fp32 [M, K] (lda) or, when transA, stored [K, M].
// `kernel` must be a resolved kernel (kAvx512 or kAmx) the CPU supports.
void gemmBf16(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const PackedBf16& b, float* c,
              int64_t ldc, const Epilogue& epi, const GemmBatch& batch, Bf16Kernel kernel);

// C[M, N] (ldc) = epi(op(A) · float(B)) in fp32, B stored as f16 panels. Requires AVX-512F + F16C.
void gemmF16(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const PackedF16& b, float* c,
             int64_t ldc, const Epilogue& epi, const GemmBatch& batch);

// Single-threaded tile product for kernels that run their own parallel loop (attention):
// C[M, N] (ldc) = or += bf16(A)[M, K] (fp32 row-major, lda) · B, where B is given as packed-bf16
// panels (panel p at b + p·panelStride, pair row q at +q·64) and K is even or the panels are
// zero-padded past K. Uses AMX when kernel == kAmx (after amx::configureTiles() on this thread).
void gemmBf16PackedTile(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const uint16_t* b,
                        int64_t panelStride, float* c, int64_t ldc, bool accumulate, Bf16Kernel kernel);

// fp32 -> bf16 (round to nearest even; NaN stays NaN) and back, scalar.
uint16_t floatToBf16(float f);
float bf16ToFloatScalar(uint16_t h);

// AMX kernels (gemm_amx.cc). Tile state is configured per thread on first use.
namespace amx {
// Loads this kernel's tile configuration on the calling thread; call it at the start of every task
// that then calls blockProduct or gemmBf16PackedTile(kAmx).
void configureTiles();
// C[rows, N] (ldc) (+)= A · B for a block of up to 32 rows: `a` is bf16 row-major [rows, Kp]
// (stride lda elements, Kp a multiple of 32, rows past `rows` readable and zero), B packed panels
// [p0, p1) over pair rows [q0, q0 + Kp/2) of a panel (panel p at b + p·panelStride).
void blockProduct(int rows, int64_t Kp, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t panelStride, int64_t q0,
                  int64_t p0, int64_t p1, int64_t N, float* c, int64_t ldc, bool accumulate);
}  // namespace amx

}  // namespace inferjit
