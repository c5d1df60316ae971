// Reduced-precision GEMM drivers (layouts in gemm_bf16.h): CPU feature probing and the kernel
// dispatch table, bf16/f16 packing, the AVX512_BF16 microkernel (vdpbf16ps, R×32 register tile),
// the fp16-storage microkernel (vcvtph2ps on the B loads, fp32 FMAs), and the threaded drivers,
// which split work exactly like the fp32 GEMM (gemm.cc). The AMX block kernel is in gemm_amx.cc.
// Every kernel carries its own target attribute, so they exist in portable (-march=x86-64-v3)
// builds too and are only called after bf16Caps() said the CPU has them.
#include "gemm_bf16.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "../threadpool.h"

#define IJ_TGT_512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,f16c,fma")))
#define IJ_TGT_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,f16c,fma")))

namespace inferjit {

// ---- CPU features ----

namespace {
Bf16Caps probe() {
  Bf16Caps caps;
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return caps;
  const bool osxsave = (c >> 27) & 1;
  caps.f16c = (c >> 29) & 1;
  if (!osxsave || __get_cpuid_max(0, nullptr) < 7) return caps;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint64_t xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  const bool zmmState = (xcr0 & 0xe6) == 0xe6;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
  __cpuid_count(7, 0, a, b, c, d);
  const bool f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  const bool amxBf16 = (d >> 22) & 1, amxTile = (d >> 24) & 1;
  caps.avx512f = zmmState && f && dq && bw && vl;
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  caps.avx512bf16 = caps.avx512f && ((a1 >> 5) & 1);
  caps.amxBf16 = amxBf16 && amxTile;
  if (caps.amxBf16 && caps.avx512bf16) {
#if defined(__linux__)
    // Linux hands out the 8 KB tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
    constexpr int kReqXcompPerm = 0x1023, kXtileData = 18;
    caps.amxUsable = syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#endif
  }
#endif
  // INFERJIT_DISABLE_ISA=avx512bf16,amx,avx512 hides features, so the fallbacks and their error
  // messages can be exercised (and kernels compared) on a machine that has everything.
  if (const char* off = std::getenv("INFERJIT_DISABLE_ISA")) {
    const std::string s = std::string(",") + off + ",";
    if (s.find(",avx512,") != std::string::npos) caps.avx512f = false;
    if (s.find(",avx512bf16,") != std::string::npos || !caps.avx512f) caps.avx512bf16 = false;
    if (s.find(",amx,") != std::string::npos || !caps.avx512bf16) caps.amxBf16 = caps.amxUsable = false;
  }
  return caps;
}
}  // namespace

const Bf16Caps& bf16Caps() {
  static const Bf16Caps caps = probe();
  return caps;
}

const char* bf16KernelName(Bf16Kernel k) {
  switch (k) {
    case Bf16Kernel::kAvx512: return "avx512bf16";
    case Bf16Kernel::kAmx: return "amx";
    default: return "auto";
  }
}

Bf16Kernel bf16KernelFromEnv() {
  const char* e = std::getenv("INFERJIT_BF16_KERNEL");
  if (!e) return Bf16Kernel::kAuto;
  if (!std::strcmp(e, "avx512") || !std::strcmp(e, "avx512bf16")) return Bf16Kernel::kAvx512;
  if (!std::strcmp(e, "amx")) return Bf16Kernel::kAmx;
  return Bf16Kernel::kAuto;
}

bool resolveBf16Kernel(Bf16Kernel requested, Bf16Kernel* out, std::string* why) {
  const Bf16Caps& caps = bf16Caps();
  if (!caps.avx512f) {
    *why = "bf16 kernels need AVX-512 (F/BW/DQ/VL) and AVX512_BF16 (vdpbf16ps); this CPU lacks AVX-512";
    return false;
  }
  if (!caps.avx512bf16) {
    *why = "bf16 kernels need AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16); this CPU has AVX-512 but lacks AVX512_BF16";
    return false;
  }
  if (requested == Bf16Kernel::kAmx && !caps.amxUsable) {
    *why = caps.amxBf16 ? "the AMX-BF16 kernel was requested but the OS refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)"
                        : "the AMX-BF16 kernel was requested but this CPU lacks AMX-TILE/AMX-BF16";
    return false;
  }
  *out = requested == Bf16Kernel::kAuto ? (caps.amxUsable ? Bf16Kernel::kAmx : Bf16Kernel::kAvx512) : requested;
  return true;
}

// ---- scalar conversions ----

uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float bf16ToFloatScalar(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace {

// ---- memory ----

void* alignedBytes(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 64, std::max<size_t>(bytes, 64)) != 0) throw std::bad_alloc();
  return p;
}

template <typename T>
struct Scratch {
  T* p = nullptr;
  size_t cap = 0;
  T* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = static_cast<T*>(alignedBytes(n * sizeof(T)));
      cap = n;
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};
thread_local Scratch<uint32_t> tPackBf16A;  // bf16 pairs of the A block (AVX512 kernel)
thread_local Scratch<uint16_t> tPackAmxA;   // bf16 rows of the A block (AMX kernel)
thread_local Scratch<float> tPackF32A;      // fp32 A block (f16-storage kernel)
thread_local Scratch<uint16_t> tRow;        // one converted row while packing

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

int64_t envInt(const char* name, int64_t dflt, int64_t lo) {
  const char* e = std::getenv(name);
  return e ? std::max(lo, static_cast<int64_t>(std::atoll(e))) : dflt;
}

// ---- vector conversions (AVX-512) ----

IJ_TGT_512 inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << n) - 1u);
}

// src[off .. off+n) (n clamped to [0, 16]) as 16 floats, zeros past n. Masked-off lanes are never read.
IJ_TGT_512 inline __m512 load16(const void* src, SrcType t, int64_t off, int64_t n) {
  const __mmask16 m = mask16(n);
  switch (t) {
    case SrcType::kF16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(src) + off));
    case SrcType::kBf16:
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(src) + off)), 16));
    default: return _mm512_maskz_loadu_ps(m, static_cast<const float*>(src) + off);
  }
}

// 32 elements src[off .. off+n) as bf16 (round to nearest even), zeros past n.
IJ_TGT_BF16 inline __m512i bf16x32(const void* src, SrcType t, int64_t off, int64_t n) {
  const __m512 lo = load16(src, t, off, n), hi = load16(src, t, off + 16, n - 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// One row of n source elements as bf16 into out[0 .. nPad) (nPad a multiple of 32), zero-padded.
IJ_TGT_BF16 void rowToBf16(const void* src, SrcType t, int64_t off, int64_t n, int64_t nPad, uint16_t* out) {
  for (int64_t i = 0; i < nPad; i += 32) _mm512_storeu_si512(out + i, bf16x32(src, t, off + i, n - i));
}

IJ_TGT_BF16 void packBf16PanelImpl(const void* b, SrcType t, int64_t ldb, bool transB, int64_t K, int64_t N, int64_t p, uint16_t* dst) {
  const int64_t Kp = roundUp(std::max<int64_t>(K, 1), kBf16KAlign);
  const int64_t j0 = p * kBf16NR;
  const int nc = static_cast<int>(std::min<int64_t>(kBf16NR, N - j0));
  if (!transB) {
    // Rows 2q and 2q+1 of the panel, 32 columns each, interleaved element by element.
    alignas(64) static const uint16_t kIdx[2][32] = {
        {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39, 8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47},
        {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55, 24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63}};
    const __m512i idx0 = _mm512_load_si512(kIdx[0]), idx1 = _mm512_load_si512(kIdx[1]);
    for (int64_t q = 0; q < Kp / 2; q++) {
      const int64_t k = 2 * q;
      const __m512i r0 = k < K ? bf16x32(b, t, k * ldb + j0, nc) : _mm512_setzero_si512();
      const __m512i r1 = k + 1 < K ? bf16x32(b, t, (k + 1) * ldb + j0, nc) : _mm512_setzero_si512();
      _mm512_storeu_si512(dst + q * 64, _mm512_permutex2var_epi16(r0, idx0, r1));
      _mm512_storeu_si512(dst + q * 64 + 32, _mm512_permutex2var_epi16(r0, idx1, r1));
    }
    return;
  }
  // B stored [N, K]: column j is a contiguous storage row, so its (k, k+1) pairs are adjacent
  // already; convert each column once and scatter its 32-bit pairs into the panel's pair rows.
  uint16_t* row = tRow.get(static_cast<size_t>(Kp));
  uint32_t* d32 = reinterpret_cast<uint32_t*>(dst);
  for (int j = 0; j < kBf16NR; j++) {
    if (j < nc) rowToBf16(b, t, (j0 + j) * ldb, K, Kp, row);
    else std::memset(row, 0, static_cast<size_t>(Kp) * 2);
    const uint32_t* r32 = reinterpret_cast<const uint32_t*>(row);
    for (int64_t q = 0; q < Kp / 2; q++) d32[q * kBf16NR + j] = r32[q];
  }
}

// f16 panels in the fp32 panel layout ([K][32] per panel).
IJ_TGT_512 void packF16PanelImpl(const void* b, SrcType t, int64_t ldb, bool transB, int64_t K, int64_t N, int64_t p, uint16_t* dst) {
  const int64_t j0 = p * kBf16NR;
  const int nc = static_cast<int>(std::min<int64_t>(kBf16NR, N - j0));
  if (!transB) {
    for (int64_t k = 0; k < K; k++) {
      for (int h = 0; h < 2; h++) {
        const __m512 v = load16(b, t, k * ldb + j0 + 16 * h, nc - 16 * h);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k * kBf16NR + 16 * h), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
      }
    }
    return;
  }
  for (int j = 0; j < kBf16NR; j++) {
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
      alignas(64) uint16_t h[16];
      const __m512 v = j < nc ? load16(b, t, (j0 + j) * ldb + k0, K - k0) : _mm512_setzero_ps();
      _mm256_store_si256(reinterpret_cast<__m256i*>(h), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
      for (int64_t k = k0; k < std::min(K, k0 + 16); k++) dst[k * kBf16NR + j] = h[k - k0];
    }
  }
}

// ---- epilogue ----

// The fp32 GEMM's epilogue (alpha, bias, activation from simd.h, residual) applied to a finished
// rows × nc tile of C that was just stored (still in L1). Written against VecF, so it runs at the
// width the build was compiled for.
void tileEpilogue(float* c, int64_t ldc, int rows, int nc, const Epilogue& epi, int64_t row0, int64_t col0, const float* res) {
  const bool trivial = epi.alpha == 1.0f && !epi.bias && epi.act == kActNone && !res;
  if (trivial) return;
  for (int r = 0; r < rows; r++) {
    float* cr = c + r * ldc;
    const float* rr = res ? res + (row0 + r) * epi.ldr + col0 : nullptr;
    for (int j = 0; j < nc; j += kW) {
      const int n = std::min(kW, nc - j);
      VecF v = n == kW ? VecF::load(cr + j) : VecF::loadPartial(cr + j, n);
      if (epi.alpha != 1.0f) v = v * VecF::set1(epi.alpha);
      if (epi.bias) {
        if (epi.biasPerRow) v = v + VecF::set1(epi.bias[row0 + r]);
        else v = v + (n == kW ? VecF::load(epi.bias + col0 + j) : VecF::loadPartial(epi.bias + col0 + j, n));
      }
      v = activateDyn(epi.act, v);
      if (rr) v = v + (n == kW ? VecF::load(rr + j) : VecF::loadPartial(rr + j, n));
      if (n == kW) v.store(cr + j);
      else v.storePartial(cr + j, n);
    }
  }
}

// K = 0: the epilogue of zeros.
void emptyProduct(int64_t M, int64_t N, float* c, int64_t ldc, const Epilogue& epi, const GemmBatch& batch) {
  for (int64_t bi = 0; bi < batch.count; bi++) {
    float* cb = c + (batch.cOffsets ? batch.cOffsets[bi] : 0);
    const float* rb = epi.residual ? epi.residual + (batch.rOffsets ? batch.rOffsets[bi] : 0) : nullptr;
    for (int64_t i = 0; i < M; i++) std::fill(cb + i * ldc, cb + i * ldc + N, 0.0f);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j0 = 0; j0 < N; j0 += 1024)
        tileEpilogue(cb + i * ldc + j0, ldc, 1, static_cast<int>(std::min<int64_t>(1024, N - j0)), epi, i, j0, rb);
  }
}

// ---- AVX512_BF16 microkernel ----

constexpr int kMRb = 14;  // 28 zmm accumulators, 2 B vectors, broadcasts folded into vdpbf16ps

// Packed A (per thread, per block): row tile t at dst + t·kMRb·qc (qc = pair rows), pair (r, q)
// (the bf16 pair A[r][2q], A[r][2q+1] as one 32-bit word) at q·kMRb + r.
inline int64_t tileCount(int64_t mc, int mr) { return (mc + mr - 1) / mr; }
inline int64_t tileStart(int64_t mc, int64_t t, int64_t nt) { return mc * t / nt; }

IJ_TGT_BF16 void packABf16(const float* a, int64_t lda, bool transA, int64_t i0, int64_t mc, int64_t k0, int64_t kc, uint32_t* dst) {
  const int64_t qc = ceilDiv(kc, 2);
  const int64_t nt = tileCount(mc, kMRb);
  alignas(64) uint32_t tmp[16];
  for (int64_t t = 0; t < nt; t++) {
    const int64_t ir = tileStart(mc, t, nt);
    const int mr = static_cast<int>(tileStart(mc, t + 1, nt) - ir);
    uint32_t* d = dst + t * kMRb * qc;
    if (!transA) {
      for (int r = 0; r < mr; r++) {
        const float* src = a + (i0 + ir + r) * lda + k0;
        for (int64_t k = 0; k < kc; k += 32) {
          _mm512_store_si512(tmp, bf16x32(src, SrcType::kF32, k, kc - k));
          const int64_t q0 = k / 2, nq = std::min<int64_t>(16, qc - q0);
          for (int64_t q = 0; q < nq; q++) d[(q0 + q) * kMRb + r] = tmp[q];
        }
      }
    } else {
      for (int64_t q = 0; q < qc; q++) {
        for (int r = 0; r < mr; r++) {
          const int64_t i = i0 + ir + r, k = k0 + 2 * q;
          const uint16_t lo = floatToBf16(a[k * lda + i]);
          const uint16_t hi = 2 * q + 1 < kc ? floatToBf16(a[(k + 1) * lda + i]) : 0;
          d[q * kMRb + r] = static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
        }
      }
    }
  }
}

IJ_TGT_512 inline void storeTile2(float* cr, int nc, __m512 v0, __m512 v1, bool accumulate) {
  const __mmask16 m0 = mask16(nc), m1 = mask16(nc - 16);
  if (accumulate) {
    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
  }
  _mm512_mask_storeu_ps(cr, m0, v0);
  _mm512_mask_storeu_ps(cr + 16, m1, v1);
}

// Shared tail of the microkernels: sum the S independent accumulator sets (kept apart to hide FMA
// latency for small R) and store the R x 32 tile through the epilogue-aware store.
template <int S, int R>
IJ_TGT_512 inline void reduceAndStore(__m512 (&acc)[S][R][2], float* c, int64_t ldc, int nc, bool accumulate) {
#pragma GCC unroll 64
  for (int s = 1; s < S; s++)
#pragma GCC unroll 64
    for (int r = 0; r < R; r++) {
      acc[0][r][0] = _mm512_add_ps(acc[0][r][0], acc[s][r][0]);
      acc[0][r][1] = _mm512_add_ps(acc[0][r][1], acc[s][r][1]);
    }
#pragma GCC unroll 64
  for (int r = 0; r < R; r++) storeTile2(c + r * ldc, nc, acc[0][r][0], acc[0][r][1], accumulate);
}

// R rows (R <= kMRb) × 32 columns (nc stored), qc pair rows. Few rows give short dependency
// chains, so S independent accumulator sets take alternate pair rows (as in the fp32 kernel).
template <int R>
IJ_TGT_BF16 void microBf16(int64_t qc, const uint32_t* __restrict a, const uint16_t* __restrict b, float* __restrict c, int64_t ldc,
                           int nc, bool accumulate) {
  constexpr int S = R >= 4 ? 1 : (R == 1 ? 4 : 2);
  __m512 acc[S][R][2];
#pragma GCC unroll 64
  for (int s = 0; s < S; s++)
#pragma GCC unroll 64
    for (int r = 0; r < R; r++) acc[s][r][0] = acc[s][r][1] = _mm512_setzero_ps();
  int64_t q = 0;
  for (; q + S <= qc; q += S) {
#pragma GCC unroll 64
    for (int s = 0; s < S; s++) {
      const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + (q + s) * 64));
      const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + (q + s) * 64 + 32));
#pragma GCC unroll 64
      for (int r = 0; r < R; r++) {
        const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[(q + s) * kMRb + r])));
        acc[s][r][0] = _mm512_dpbf16_ps(acc[s][r][0], av, b0);
        acc[s][r][1] = _mm512_dpbf16_ps(acc[s][r][1], av, b1);
      }
    }
  }
  for (; q < qc; q++) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + q * 64));
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + q * 64 + 32));
#pragma GCC unroll 64
    for (int r = 0; r < R; r++) {
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[q * kMRb + r])));
      acc[0][r][0] = _mm512_dpbf16_ps(acc[0][r][0], av, b0);
      acc[0][r][1] = _mm512_dpbf16_ps(acc[0][r][1], av, b1);
    }
  }
  reduceAndStore<S, R>(acc, c, ldc, nc, accumulate);
}

using MicroBf16Fn = void (*)(int64_t, const uint32_t*, const uint16_t*, float*, int64_t, int, bool);
template <size_t... I>
constexpr std::array<MicroBf16Fn, sizeof...(I)> makeBf16Table(std::index_sequence<I...>) {
  return {{(I == 0 ? nullptr : &microBf16<(I == 0 ? 1 : static_cast<int>(I))>)...}};
}
// The dispatch table of the AVX512_BF16 path: microkernel by row count.
constexpr auto kMicroBf16 = makeBf16Table(std::make_index_sequence<kMRb + 1>{});

// ---- fp16-storage microkernel (fp32 FMAs, B converted by vcvtph2ps as it is loaded) ----

constexpr int kMRh = 14;

void packAF32(const float* a, int64_t lda, bool transA, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  const int64_t nt = tileCount(mc, kMRh);
  for (int64_t t = 0; t < nt; t++) {
    const int64_t ir = tileStart(mc, t, nt);
    const int mr = static_cast<int>(tileStart(mc, t + 1, nt) - ir);
    float* d = dst + t * kMRh * kc;
    if (!transA) {
      for (int r = 0; r < mr; r++) {
        const float* src = a + (i0 + ir + r) * lda + k0;
        for (int64_t k = 0; k < kc; k++) d[k * kMRh + r] = src[k];
      }
    } else {
      for (int64_t k = 0; k < kc; k++) std::memcpy(d + k * kMRh, a + (k0 + k) * lda + i0 + ir, mr * sizeof(float));
    }
  }
}

template <int R>
IJ_TGT_512 void microF16(int64_t kc, const float* __restrict a, const uint16_t* __restrict b, float* __restrict c, int64_t ldc, int nc,
                         bool accumulate) {
  constexpr int S = R >= 4 ? 1 : (R == 1 ? 4 : 2);
  __m512 acc[S][R][2];
#pragma GCC unroll 64
  for (int s = 0; s < S; s++)
#pragma GCC unroll 64
    for (int r = 0; r < R; r++) acc[s][r][0] = acc[s][r][1] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + S <= kc; k += S) {
#pragma GCC unroll 64
    for (int s = 0; s < S; s++) {
      const __m512 b0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (k + s) * kBf16NR)));
      const __m512 b1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (k + s) * kBf16NR + 16)));
#pragma GCC unroll 64
      for (int r = 0; r < R; r++) {
        const __m512 av = _mm512_set1_ps(a[(k + s) * kMRh + r]);
        acc[s][r][0] = _mm512_fmadd_ps(av, b0, acc[s][r][0]);
        acc[s][r][1] = _mm512_fmadd_ps(av, b1, acc[s][r][1]);
      }
    }
  }
  for (; k < kc; k++) {
    const __m512 b0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * kBf16NR)));
    const __m512 b1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * kBf16NR + 16)));
#pragma GCC unroll 64
    for (int r = 0; r < R; r++) {
      const __m512 av = _mm512_set1_ps(a[k * kMRh + r]);
      acc[0][r][0] = _mm512_fmadd_ps(av, b0, acc[0][r][0]);
      acc[0][r][1] = _mm512_fmadd_ps(av, b1, acc[0][r][1]);
    }
  }
  reduceAndStore<S, R>(acc, c, ldc, nc, accumulate);
}

using MicroF16Fn = void (*)(int64_t, const float*, const uint16_t*, float*, int64_t, int, bool);
template <size_t... I>
constexpr std::array<MicroF16Fn, sizeof...(I)> makeF16Table(std::index_sequence<I...>) {
  return {{(I == 0 ? nullptr : &microF16<(I == 0 ? 1 : static_cast<int>(I))>)...}};
}
constexpr auto kMicroF16 = makeF16Table(std::make_index_sequence<kMRh + 1>{});

// ---- AMX A packing: bf16 rows [mcPad][kcPad], zero rows and columns past the block ----

// Row stride of packed A for AMX: kcPad plus one cache line, so the 16 rows of an A tile do not
// all fall into the same few L1 sets (a power-of-two stride such as 2 KB maps them to 2 of 64).
inline int64_t amxStride(int64_t kcPad) { return kcPad + 32; }

IJ_TGT_BF16 void packAAmx(const float* a, int64_t lda, bool transA, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int64_t mcPad,
                          int64_t kcPad, uint16_t* dst) {
  const int64_t ld = amxStride(kcPad);
  for (int64_t r = 0; r < mcPad; r++) {
    uint16_t* d = dst + r * ld;
    if (r >= mc) {
      std::memset(d, 0, static_cast<size_t>(kcPad) * 2);
    } else if (!transA) {
      rowToBf16(a, SrcType::kF32, (i0 + r) * lda + k0, kc, kcPad, d);
    } else {
      for (int64_t k = 0; k < kcPad; k++) d[k] = k < kc ? floatToBf16(a[(k0 + k) * lda + i0 + r]) : 0;
    }
  }
}

// ---- the shared task split ----

// Each task owns a range of rows × a range of B panels (N split first, so every thread packs its A
// block once and streams only its own panels; M split only when N is narrow), about two tasks per
// thread; rowAlign keeps row ranges on microkernel-tile boundaries.
template <typename Fn>
void splitTasks(int64_t M, int64_t panels, int64_t count, int64_t rowAlign, const Fn& fn) {
  const int T = numThreads();
  const int64_t rowTiles = ceilDiv(M, rowAlign);
  const int64_t perBatch = std::max<int64_t>(1, ceilDiv(2 * T, count));
  const int64_t nParts = std::min(panels, perBatch);
  const int64_t mParts = std::min(rowTiles, ceilDiv(perBatch, nParts));
  parallelFor(count * mParts * nParts, [&](int64_t task, int) {
    const int64_t np = task % nParts, rest = task / nParts;
    const int64_t mp = rest % mParts, bi = rest / mParts;
    const int64_t r0 = std::min(M, (rowTiles * mp / mParts) * rowAlign), r1 = std::min(M, (rowTiles * (mp + 1) / mParts) * rowAlign);
    const int64_t p0 = panels * np / nParts, p1 = panels * (np + 1) / nParts;
    if (r0 < r1 && p0 < p1) fn(bi, r0, r1, p0, p1);
  });
}

inline int64_t offAt(const int64_t* offs, int64_t i) { return offs ? offs[i] : 0; }

// Cache blocking. bf16 halves the bytes per element, so the AVX512 kernel's K block is twice the
// fp32 one (a 14×1024 A micro-panel is 28 KB, like fp32's 14×512). AMX keeps C in tile registers
// for a whole K block, so long K blocks (1024) and 256-row A blocks (~0.5 MB of bf16, in L2) won
// on Sapphire Rapids: shorter ones re-load and re-store C tiles more often than they save in cache
// misses (measured 512×768×3072, one thread: KC 256 -> 1024 gave +35%). Env overrides for tuning.
const int64_t kKCb = roundUp(envInt("INFERJIT_BF16_KC", 1024, 32), 32);
const int64_t kMcTilesB = envInt("INFERJIT_BF16_MC", 12, 1);
const int64_t kKCa = roundUp(envInt("INFERJIT_AMX_KC", 1024, 32), 32);
const int64_t kMCa = roundUp(envInt("INFERJIT_AMX_MC", 256, 32), 32);
const int64_t kKCh = 512;
constexpr int64_t kMcTilesH = 12;

void gemmBf16Avx512(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const PackedBf16& pb, float* c,
                    int64_t ldc, const Epilogue& epi, const GemmBatch& batch) {
  const int64_t panels = pb.panels;
  const int64_t kBlocks = ceilDiv(K, kKCb);
  const int64_t KC = roundUp(ceilDiv(K, kBlocks), 2);  // even: blocks start on pair boundaries
  const int64_t MC = kMRb * kMcTilesB;
  splitTasks(M, panels, batch.count, kMRb, [&](int64_t bi, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
    const float* ab = a + offAt(batch.aOffsets, bi);
    float* cb = c + offAt(batch.cOffsets, bi);
    const float* rb = epi.residual ? epi.residual + offAt(batch.rOffsets, bi) : nullptr;
    uint32_t* ap = tPackBf16A.get(static_cast<size_t>(MC * (KC / 2 + 1)));
    for (int64_t i0 = r0; i0 < r1; i0 += MC) {
      const int64_t mc = std::min(MC, r1 - i0);
      for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0), qc = ceilDiv(kc, 2);
        const bool last = k0 + kc >= K;
        packABf16(ab, lda, transA, i0, mc, k0, kc, ap);
        for (int64_t p = p0; p < p1; p++) {
          const int64_t j0 = p * kBf16NR;
          const int nc = static_cast<int>(std::min<int64_t>(kBf16NR, N - j0));
          const uint16_t* bpanel = pb.data + p * pb.panelStride() + (k0 / 2) * 64;
          const int64_t nt = tileCount(mc, kMRb);
          for (int64_t t = 0; t < nt; t++) {
            const int64_t ir = tileStart(mc, t, nt);
            const int mr = static_cast<int>(tileStart(mc, t + 1, nt) - ir);
            const int64_t row = i0 + ir;
            float* ct = cb + row * ldc + j0;
            kMicroBf16[mr](qc, ap + t * kMRb * qc, bpanel, ct, ldc, nc, k0 > 0);
            if (last) tileEpilogue(ct, ldc, mr, nc, epi, row, j0, rb);
          }
        }
      }
    }
  });
}

void gemmBf16Amx(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const PackedBf16& pb, float* c,
                 int64_t ldc, const Epilogue& epi, const GemmBatch& batch) {
  const int64_t panels = pb.panels;
  const int64_t Kp = pb.Kp;
  const int64_t kBlocks = ceilDiv(Kp, kKCa);
  const int64_t KC = roundUp(ceilDiv(Kp, kBlocks), 32);
  splitTasks(M, panels, batch.count, 32, [&](int64_t bi, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
    amx::configureTiles();
    const float* ab = a + offAt(batch.aOffsets, bi);
    float* cb = c + offAt(batch.cOffsets, bi);
    const float* rb = epi.residual ? epi.residual + offAt(batch.rOffsets, bi) : nullptr;
    uint16_t* ap = tPackAmxA.get(static_cast<size_t>(kMCa * amxStride(KC)));
    for (int64_t i0 = r0; i0 < r1; i0 += kMCa) {
      const int64_t mc = std::min(kMCa, r1 - i0), mcPad = roundUp(mc, 16);
      for (int64_t k0 = 0; k0 < Kp; k0 += KC) {
        const int64_t kcPad = std::min(KC, Kp - k0), kc = std::max<int64_t>(0, std::min(kcPad, K - k0));
        const bool last = k0 + kcPad >= Kp;
        packAAmx(ab, lda, transA, i0, mc, k0, kc, mcPad, kcPad, ap);
        // Panel-outer: a panel's K block (≤ 64 KB) stays in L1/L2 while every 32-row block of the
        // packed A (in L2) passes over it; C tiles stay in tile registers for the whole K block.
        for (int64_t p = p0; p < p1; p++) {
          for (int64_t ir = 0; ir < mc; ir += 32) {
            const int rows = static_cast<int>(std::min<int64_t>(32, mc - ir));
            float* ct = cb + (i0 + ir) * ldc;
            amx::blockProduct(rows, kcPad, ap + ir * amxStride(kcPad), amxStride(kcPad), pb.data, pb.panelStride(), k0 / 2, p, p + 1, N, ct,
                              ldc, k0 > 0);
            if (last) {
              const int64_t j0 = p * kBf16NR;
              const int nc = static_cast<int>(std::min<int64_t>(kBf16NR, N - j0));
              tileEpilogue(ct + j0, ldc, rows, nc, epi, i0 + ir, j0, rb);
            }
          }
        }
      }
    }
  });
}

}  // namespace

// ---- packing entry points ----

PackedBf16::~PackedBf16() { std::free(data); }
PackedF16::~PackedF16() { std::free(data); }

void packBBf16Panel(const void* b, SrcType type, int64_t ldb, bool transB, int64_t K, int64_t N, int64_t p, uint16_t* dst) {
  packBf16PanelImpl(b, type, ldb, transB, K, N, p, dst);
}

std::unique_ptr<PackedBf16> packBBf16(const void* b, SrcType type, int64_t ldb, bool transB, int64_t K, int64_t N) {
  auto pb = std::make_unique<PackedBf16>();
  pb->K = K;
  pb->N = N;
  pb->Kp = roundUp(std::max<int64_t>(K, 1), kBf16KAlign);
  pb->panels = ceilDiv(N, kBf16NR);
  pb->data = static_cast<uint16_t*>(alignedBytes(pb->bytes()));
  PackedBf16* raw = pb.get();
  parallelFor(raw->panels, [&](int64_t p, int) { packBf16PanelImpl(b, type, ldb, transB, K, N, p, raw->data + p * raw->panelStride()); });
  return pb;
}

std::unique_ptr<PackedF16> packBF16(const void* b, SrcType type, int64_t ldb, bool transB, int64_t K, int64_t N) {
  auto pb = std::make_unique<PackedF16>();
  pb->K = K;
  pb->N = N;
  pb->panels = ceilDiv(N, kBf16NR);
  pb->data = static_cast<uint16_t*>(alignedBytes(pb->bytes()));
  PackedF16* raw = pb.get();
  parallelFor(raw->panels, [&](int64_t p, int) { packF16PanelImpl(b, type, ldb, transB, K, N, p, raw->data + p * K * kBf16NR); });
  return pb;
}

// ---- GEMM entry points ----

void gemmBf16(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const PackedBf16& b, float* c,
              int64_t ldc, const Epilogue& epi, const GemmBatch& batch, Bf16Kernel kernel) {
  if (M <= 0 || N <= 0 || batch.count <= 0) return;
  if (K == 0) return emptyProduct(M, N, c, ldc, epi, batch);
  if (kernel == Bf16Kernel::kAmx) gemmBf16Amx(M, N, K, a, lda, transA, b, c, ldc, epi, batch);
  else gemmBf16Avx512(M, N, K, a, lda, transA, b, c, ldc, epi, batch);
}

void gemmF16(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const PackedF16& pb, float* c, int64_t ldc,
             const Epilogue& epi, const GemmBatch& batch) {
  if (M <= 0 || N <= 0 || batch.count <= 0) return;
  if (K == 0) return emptyProduct(M, N, c, ldc, epi, batch);
  const int64_t kBlocks = ceilDiv(K, kKCh);
  const int64_t KC = ceilDiv(K, kBlocks);
  const int64_t MC = kMRh * kMcTilesH;
  splitTasks(M, pb.panels, batch.count, kMRh, [&](int64_t bi, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
    const float* ab = a + offAt(batch.aOffsets, bi);
    float* cb = c + offAt(batch.cOffsets, bi);
    const float* rb = epi.residual ? epi.residual + offAt(batch.rOffsets, bi) : nullptr;
    float* ap = tPackF32A.get(static_cast<size_t>(MC * KC));
    for (int64_t i0 = r0; i0 < r1; i0 += MC) {
      const int64_t mc = std::min(MC, r1 - i0);
      for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0);
        const bool last = k0 + kc >= K;
        packAF32(ab, lda, transA, i0, mc, k0, kc, ap);
        for (int64_t p = p0; p < p1; p++) {
          const int64_t j0 = p * kBf16NR;
          const int nc = static_cast<int>(std::min<int64_t>(kBf16NR, N - j0));
          const uint16_t* bpanel = pb.data + (p * K + k0) * kBf16NR;
          const int64_t nt = tileCount(mc, kMRh);
          for (int64_t t = 0; t < nt; t++) {
            const int64_t ir = tileStart(mc, t, nt);
            const int mr = static_cast<int>(tileStart(mc, t + 1, nt) - ir);
            const int64_t row = i0 + ir;
            float* ct = cb + row * ldc + j0;
            kMicroF16[mr](kc, ap + t * kMRh * kc, bpanel, ct, ldc, nc, k0 > 0);
            if (last) tileEpilogue(ct, ldc, mr, nc, epi, row, j0, rb);
          }
        }
      }
    }
  });
}

void gemmBf16PackedTile(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const uint16_t* b, int64_t panelStride, float* c,
                        int64_t ldc, bool accumulate, Bf16Kernel kernel) {
  if (M <= 0 || N <= 0) return;
  const int64_t panels = ceilDiv(N, kBf16NR);
  if (kernel == Bf16Kernel::kAmx) {
    const int64_t Kp = roundUp(std::max<int64_t>(K, 1), 32), mPad = roundUp(M, 16);
    uint16_t* ap = tPackAmxA.get(static_cast<size_t>(mPad * amxStride(Kp)));
    packAAmx(a, lda, false, 0, M, 0, K, mPad, Kp, ap);
    for (int64_t ir = 0; ir < M; ir += 32) {
      const int rows = static_cast<int>(std::min<int64_t>(32, M - ir));
      amx::blockProduct(rows, Kp, ap + ir * amxStride(Kp), amxStride(Kp), b, panelStride, 0, 0, panels, N, c + ir * ldc, ldc, accumulate);
    }
    return;
  }
  const int64_t qc = ceilDiv(K, 2);
  uint32_t* ap = tPackBf16A.get(static_cast<size_t>(roundUp(M, kMRb) * qc + kMRb));
  packABf16(a, lda, false, 0, M, 0, K, ap);
  const int64_t nt = tileCount(M, kMRb);
  for (int64_t p = 0; p < panels; p++) {
    const int64_t j0 = p * kBf16NR;
    const int nc = static_cast<int>(std::min<int64_t>(kBf16NR, N - j0));
    for (int64_t t = 0; t < nt; t++) {
      const int64_t ir = tileStart(M, t, nt);
      const int mr = static_cast<int>(tileStart(M, t + 1, nt) - ir);
      kMicroBf16[mr](qc, ap + t * kMRb * qc, b + p * panelStride, c + ir * ldc + j0, ldc, nc, accumulate);
    }
  }
}

// ---- speed probe ----

Bf16SpeedProbe probeBf16Speed(Bf16Kernel kernel, int64_t M, int64_t K, int64_t N, int rounds) {
  Bf16SpeedProbe r;
  r.M = M;
  r.K = K;
  r.N = N;
  std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N)), c(static_cast<size_t>(M * N));
  uint32_t x = 0x9e3779b9u;  // xorshift: values in [-1, 1), no denormals
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return static_cast<float>(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
  };
  for (float& v : a) v = next();
  for (float& v : b) v = next();
  const std::unique_ptr<PackedB> pf = packB(b.data(), N, false, K, N);
  const std::unique_ptr<PackedBf16> ph = packBBf16(b.data(), SrcType::kF32, N, false, K, N);
  const Epilogue none;
  const GemmBatch one;
  auto timeMs = [](const auto& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  auto bf16 = [&] { gemmBf16(M, N, K, a.data(), K, false, *ph, c.data(), N, none, one, kernel); };
  auto fp32 = [&] { gemm(M, N, K, a.data(), K, false, nullptr, 0, false, pf.get(), c.data(), N, none, one); };
  bf16();  // warm: the threads, the A scratch, the caches
  fp32();
  r.bf16Ms = r.fp32Ms = 1e30;
  for (int i = 0; i < std::max(1, rounds); i++) {  // alternating, best of each: noise only slows a round down
    r.bf16Ms = std::min(r.bf16Ms, timeMs(bf16));
    r.fp32Ms = std::min(r.fp32Ms, timeMs(fp32));
  }
  return r;
}

}  // namespace inferjit
