// fp32 GEMM driver: B panels packed once (or per call), A packed per (row block, K block) into
// per-thread scratch, a register-blocked kMR×kNR microkernel, and the epilogue applied to each
// tile on its final K block. Threads take (batch, row block, panel group) tasks dynamically.
#include "gemm.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../threadpool.h"
#include "../transpose.h"
#if defined(IJ_AVX512)
#include "micro_avx512_asm.h"
#endif

namespace inferjit {
namespace {

float* alignedFloats(size_t n) {
  void* p = nullptr;
  const size_t bytes = std::max<size_t>(n, 1) * sizeof(float);
  // Large packed operands are streamed panel by panel; 2 MB pages cut the TLB misses of
  // jumping between panels (Linux THP in "madvise" mode needs the hint).
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= 2 * kHuge;
  if (posix_memalign(&p, huge ? kHuge : 64, bytes) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return static_cast<float*>(p);
}

struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = alignedFloats(n);
      cap = n;
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};
thread_local Scratch tPackA;
// The calling thread's packed copy of all of A, shared read-only by the workers of one call.
thread_local Scratch tSharedA;

// The epilogue as one tile sees it (pointers already moved to the tile's first row/column).
struct TileEpi {
  const float* bias;
  bool biasPerRow;
  int act;
  const float* res;
  int64_t ldr;
  float alpha;
};

inline VecF loadN(const float* p, int off, int nc) {
  if (nc >= off + kW) return VecF::load(p + off);
  if (nc > off) return VecF::loadPartial(p + off, nc - off);
  return VecF::zero();
}
inline void storeN(float* p, int off, int nc, VecF v) {
  if (nc >= off + kW) v.store(p + off);
  else if (nc > off) v.storePartial(p + off, nc - off);
}

inline VecF finish(VecF v, const TileEpi* ep, int r, int off, int nc) {
  if (ep->alpha != 1.0f) v = v * VecF::set1(ep->alpha);
  if (ep->bias) v = v + (ep->biasPerRow ? VecF::set1(ep->bias[r]) : loadN(ep->bias, off, nc));
  v = activateDyn(ep->act, v);
  if (ep->res) v = v + loadN(ep->res + r * ep->ldr, off, nc);
  return v;
}

// One k step of an R-row tile: two B vectors times R broadcast A values into acc.
template <int R>
inline __attribute__((always_inline)) void fmaStep(VecF (&acc)[R][2], const float* __restrict a, const float* __restrict b) {
  const VecF b0 = VecF::load(b), b1 = VecF::load(b + kW);
#pragma GCC unroll 64
  for (int r = 0; r < R; r++) {
    const VecF av = VecF::set1(a[r]);
    acc[r][0] = fmadd(av, b0, acc[r][0]);
    acc[r][1] = fmadd(av, b1, acc[r][1]);
  }
}

// The k loop of a tile with enough rows to hide FMA latency (the portable path; AVX-512 builds
// run the generated assembly for 8+ rows). Prefetch pulls the next B micro-panel toward L1 while
// this one is consumed.
template <int R, bool Prefetch>
inline __attribute__((always_inline)) void kLoop(VecF (&acc)[R][2], int64_t kc, const float* a, const float* b, const float* bNext) {
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    if constexpr (Prefetch) {
      __builtin_prefetch(bNext + k * kNR, 0, 3);
      __builtin_prefetch(bNext + k * kNR + kNR - 1, 0, 3);
    }
    fmaStep<R>(acc, a + k * kMR, b + k * kNR);
  }
}

// The C tile is read after the k loop (a later K block, or a residual in the epilogue): start
// fetching it before the loop so those loads do not wait on L2.
template <int R>
inline __attribute__((always_inline)) void prefetchCTile(const float* c, int64_t ldc, bool accumulate, const TileEpi* ep) {
  if (!accumulate && !(ep && ep->res)) return;
#pragma GCC unroll 64
  for (int r = 0; r < R; r++) {
    const float* cr = accumulate ? c + r * ldc : ep->res + r * ep->ldr;
    __builtin_prefetch(cr, 0, 3);
    __builtin_prefetch(cr + kNR - 1, 0, 3);
  }
}

// Adds what C holds (later K blocks), applies the epilogue (last K block) and stores nc columns.
template <int R>
inline __attribute__((always_inline)) void storeTile(VecF (&acc)[R][2], float* c, int64_t ldc, int nc, bool accumulate, const TileEpi* ep) {
#pragma GCC unroll 64
  for (int r = 0; r < R; r++) {
    float* cr = c + r * ldc;
    VecF v0 = acc[r][0], v1 = acc[r][1];
    if (accumulate) {
      v0 = v0 + loadN(cr, 0, nc);
      v1 = v1 + loadN(cr, kW, nc);
    }
    if (ep) {
      v0 = finish(v0, ep, r, 0, nc);
      v1 = finish(v1, ep, r, kW, nc);
    }
    storeN(cr, 0, nc, v0);
    storeN(cr, kW, nc, v1);
  }
}

#if defined(IJ_AVX512)
// The generated assembly k loops (micro_avx512_asm.h) hand their accumulators back through memory
// (R rows × 2 vectors, row-major).
template <int R>
inline __attribute__((always_inline)) void loadAccumulators(const float* accBuf, VecF (&acc)[R][2]) {
#pragma GCC unroll 64
  for (int r = 0; r < R; r++) {
    acc[r][0] = VecF::load(accBuf + (2 * r) * kW);
    acc[r][1] = VecF::load(accBuf + (2 * r + 1) * kW);
  }
}

// The assembly k loop over a packed A micro-panel.
template <int R>
inline __attribute__((always_inline)) void kLoopAsmTile(VecF (&acc)[R][2], int64_t kc, const float* a, const float* b, const float* bNext) {
  alignas(64) float accBuf[R * 2 * kW];
  kKLoopAsm[R](kc, a, b, bNext ? bNext : b, accBuf);
  loadAccumulators<R>(accBuf, acc);
}
#endif

// R rows (R <= kMR) × kNR columns (nc of them stored). With few rows the FMA chains are too
// short to hide latency, so S independent accumulator sets take alternate k steps.
template <int R>
void micro(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc, int nc,
           bool accumulate, const TileEpi* ep, const float* bNext) {
  constexpr int S = R >= 4 ? 1 : (R == 1 ? 4 : 2);
  VecF acc[S][R][2];
#pragma GCC unroll 64
  for (int s = 0; s < S; s++)
#pragma GCC unroll 64
    for (int r = 0; r < R; r++) acc[s][r][0] = acc[s][r][1] = VecF::zero();
  int64_t k = 0;
  if constexpr (S == 1) {
    prefetchCTile<R>(c, ldc, accumulate, ep);
#if defined(IJ_AVX512)
    if constexpr (R >= 8) kLoopAsmTile<R>(acc[0], kc, a, b, bNext);
    else
#endif
    if (bNext) kLoop<R, true>(acc[0], kc, a, b, bNext);
    else kLoop<R, false>(acc[0], kc, a, b, b);
  } else {
    // Few rows: each B element is used R <= 3 times, so the loop streams B from memory (weights
    // of GEMV-like products). Software prefetch well ahead of the stream; panels of one K block
    // are contiguous, so running past this panel's end prefetches the next one.
    // Into L2 (T1): measured 0.84 → 1.15× ORT on a 2×768×56832 product; T0 or NTA hints lost.
    static const int64_t kAhead = [] { const char* e = std::getenv("INFERJIT_GEMV_AHEAD"); return e ? std::atoll(e) : 1024LL; }();
    for (; k + S <= kc; k += S) {
#pragma GCC unroll 64
      for (int s = 0; s < S; s++) {
        if (kAhead > 0) {
          __builtin_prefetch(b + (k + s) * kNR + kAhead, 0, 2);
          __builtin_prefetch(b + (k + s) * kNR + kAhead + kNR - 1, 0, 2);
        }
        const VecF b0 = VecF::load(b + (k + s) * kNR), b1 = VecF::load(b + (k + s) * kNR + kW);
#pragma GCC unroll 64
        for (int r = 0; r < R; r++) {
          const VecF av = VecF::set1(a[(k + s) * kMR + r]);
          acc[s][r][0] = fmadd(av, b0, acc[s][r][0]);
          acc[s][r][1] = fmadd(av, b1, acc[s][r][1]);
        }
      }
    }
    for (; k < kc; k++) {
      const VecF b0 = VecF::load(b + k * kNR), b1 = VecF::load(b + k * kNR + kW);
#pragma GCC unroll 64
      for (int r = 0; r < R; r++) {
        const VecF av = VecF::set1(a[k * kMR + r]);
        acc[0][r][0] = fmadd(av, b0, acc[0][r][0]);
        acc[0][r][1] = fmadd(av, b1, acc[0][r][1]);
      }
    }
#pragma GCC unroll 64
    for (int s = 1; s < S; s++)
#pragma GCC unroll 64
      for (int r = 0; r < R; r++) {
        acc[0][r][0] = acc[0][r][0] + acc[s][r][0];
        acc[0][r][1] = acc[0][r][1] + acc[s][r][1];
      }
  }
  storeTile<R>(acc[0], c, ldc, nc, accumulate, ep);
}

#if defined(IJ_AVX512)
// As micro (R >= kAsmMinRows), with A read in place: R rows of a row-major matrix, leading
// dimension lda, no packing pass.
template <int R>
void microDirect(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int nc, bool accumulate,
                 const TileEpi* ep, const float* bNext) {
  prefetchCTile<R>(c, ldc, accumulate, ep);
  alignas(64) float accBuf[R * 2 * kW];
  kKLoopAsmDirect[R](kc, a, lda, b, bNext ? bNext : b, accBuf);
  VecF acc[R][2];
  loadAccumulators<R>(accBuf, acc);
  storeTile<R>(acc, c, ldc, nc, accumulate, ep);
}
using MicroDirectFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, int, bool, const TileEpi*, const float*);
template <size_t... I>
constexpr std::array<MicroDirectFn, sizeof...(I)> makeMicroDirectTable(std::index_sequence<I...>) {
  return {{(I < kAsmMinRows ? nullptr : &microDirect<(I < kAsmMinRows ? kAsmMinRows : static_cast<int>(I))>)...}};
}
constexpr auto kMicroDirect = makeMicroDirectTable(std::make_index_sequence<kMR + 1>{});
constexpr bool kDirectA = true;
#else
constexpr bool kDirectA = false;
constexpr int kAsmMinRows = kMR + 1;  // no in-place kernels: every tile is packed
#endif

using MicroFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int, bool, const TileEpi*, const float*);
template <size_t... I>
constexpr std::array<MicroFn, sizeof...(I)> makeMicroTable(std::index_sequence<I...>) {
  return {{(I == 0 ? nullptr : &micro<(I == 0 ? 1 : static_cast<int>(I))>)...}};
}
// The single dispatch table: microkernel by row count, for the ISA compiled in (simd.h).
constexpr auto kMicro = makeMicroTable(std::make_index_sequence<kMR + 1>{});

void packPanelBImpl(const float* b, int64_t ldb, bool transB, int64_t K, int64_t N, int64_t p, float* dst) {
  const int64_t j0 = p * kNR;
  const int nc = static_cast<int>(std::min<int64_t>(kNR, N - j0));
  if (!transB) {
    for (int64_t k = 0; k < K; k++) {
      const float* src = b + k * ldb + j0;
      float* d = dst + k * kNR;
      std::memcpy(d, src, nc * sizeof(float));
      if (nc < kNR) std::memset(d + nc, 0, (kNR - nc) * sizeof(float));
    }
    return;
  }
  // B stored as [N, K]: column j of op(B) is storage row j, so the panel is a transpose of nc
  // storage rows (zero columns past N).
  transposeCopy(b + j0 * ldb, ldb, nc, K, dst, kNR);
  if (nc < kNR)
    for (int64_t k = 0; k < K; k++) std::memset(dst + k * kNR + nc, 0, (kNR - nc) * sizeof(float));
}

// Row tiles of a block of mc rows: ceil(mc/kMR) tiles of near-equal size (e.g. 128 rows are
// 8×13 + 2×12 rather than 9×14 + 2: a 2-row tile cannot keep the FMA units busy; 12 rows can).
inline int64_t tileCount(int64_t mc) { return (mc + kMR - 1) / kMR; }
inline int64_t tileStart(int64_t mc, int64_t t, int64_t nt) { return mc * t / nt; }

// Rows [i0, i0+mc) × cols [k0, k0+kc) of op(A) into one micro-panel per row tile (panel t at
// dst + t·kMR·kc, k-major inside: element (r, k) at k·kMR + r).
void packA(const float* a, int64_t lda, bool transA, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  const int64_t nt = tileCount(mc);
  for (int64_t t = 0; t < nt; t++) {
    const int64_t ir = tileStart(mc, t, nt);
    const int mr = static_cast<int>(tileStart(mc, t + 1, nt) - ir);
    float* d = dst + t * kMR * kc;
    if (!transA) {
      // k-major from row-major: a transpose (16×16 blocks in registers on AVX-512; the scalar
      // strided loop it replaced cost ~10% of GEMM time)
      transposeCopy(a + (i0 + ir) * lda + k0, lda, mr, kc, d, kMR);
    } else {
      for (int64_t k = 0; k < kc; k++) std::memcpy(d + k * kMR, a + (k0 + k) * lda + i0 + ir, mr * sizeof(float));
    }
  }
}

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Cache blocking, tuned on Sapphire Rapids (48 KB L1d, 2 MB L2 per core) with DiT's GEMMs:
// - K blocks of up to 768: a 768×32 B micro-panel (96 KB) streams from L2 under the prefetch of
//   the previous panel, and a DiT GEMM with K = 768 makes one pass over C instead of two
//   (185–190 GFLOP/s per core instead of ~170).
// - Row blocks of up to 32 tiles (448 rows): every B panel fetched is used by that many rows
//   before the next one; the block's A rows (448×768 floats, 1.4 MB) stay in L2. From 12 tiles to
//   24–64, DiT-B/2 went from 1.04–1.11× ORT to 1.13–1.16×.
// INFERJIT_GEMM_KC / INFERJIT_GEMM_MC (row tiles per block) override them for tuning.
const int64_t kKC = [] { const char* e = std::getenv("INFERJIT_GEMM_KC"); return e ? std::max(16LL, std::atoll(e)) : 768LL; }();
const int64_t kMcTiles = [] { const char* e = std::getenv("INFERJIT_GEMM_MC"); return e ? std::max(1LL, std::atoll(e)) : 32LL; }();

}  // namespace

PackedB::~PackedB() { std::free(data); }

void packBPanel(const float* b, int64_t ldb, bool transB, int64_t K, int64_t N, int64_t p, float* dst) {
  packPanelBImpl(b, ldb, transB, K, N, p, dst);
}

void gemmPackedTile(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b, int64_t panelStride,
                    float* c, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const int64_t kBlocks = ceilDiv(std::max<int64_t>(K, 1), kKC);
  const int64_t KC = ceilDiv(std::max<int64_t>(K, 1), kBlocks);
  const int64_t MC = ceilDiv(M, kMR) * kMR;
  float* ap = tPackA.get(static_cast<size_t>(MC * KC));
  const int64_t panels = ceilDiv(N, kNR);
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    packA(a, lda, false, 0, M, k0, kc, ap);
    for (int64_t p = 0; p < panels; p++) {
      const int64_t j0 = p * kNR;
      const int nc = static_cast<int>(std::min<int64_t>(kNR, N - j0));
      const int64_t nt = tileCount(M);
      for (int64_t t = 0; t < nt; t++) {
        const int64_t ir = tileStart(M, t, nt);
        const int mr = static_cast<int>(tileStart(M, t + 1, nt) - ir);
        kMicro[mr](kc, ap + t * kMR * kc, b + p * panelStride + k0 * kNR, c + ir * ldc + j0, ldc, nc, accumulate || k0 > 0, nullptr, nullptr);
      }
    }
  }
}

int64_t packedATileFloats(int64_t M, int64_t kc) { return tileCount(M) * kMR * kc; }

void packATiles(const float* a, int64_t lda, bool transA, int64_t M, int64_t k0, int64_t kc, float* dst) {
  packA(a, lda, transA, 0, M, k0, kc, dst);
}

void gemmPanel(int64_t M, int64_t kc, const float* aTiles, const float* bPanel, float* c, int64_t ldc, int nc, bool accumulate) {
  const int64_t nt = tileCount(M);
  for (int64_t t = 0; t < nt; t++) {
    const int64_t ir = tileStart(M, t, nt);
    const int mr = static_cast<int>(tileStart(M, t + 1, nt) - ir);
    kMicro[mr](kc, aTiles + t * kMR * kc, bPanel, c + ir * ldc, ldc, nc, accumulate, nullptr, nullptr);
  }
}

std::unique_ptr<PackedB> packB(const float* b, int64_t ldb, bool transB, int64_t K, int64_t N) {
  auto pb = std::make_unique<PackedB>();
  pb->K = K;
  pb->N = N;
  pb->panels = ceilDiv(N, kNR);
  pb->data = alignedFloats(static_cast<size_t>(pb->panels * K * kNR));
  PackedB* raw = pb.get();
  parallelFor(raw->panels, [&](int64_t p, int) { packPanelBImpl(b, ldb, transB, K, N, p, raw->data + p * K * kNR); });
  return pb;
}

void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const float* b, int64_t ldb,
          bool transB, const PackedB* packed, float* c, int64_t ldc, const Epilogue& epi, const GemmBatch& batch) {
  const int64_t count = batch.count;
  if (M <= 0 || N <= 0 || count <= 0) return;
  auto off = [](const int64_t* offs, int64_t i) { return offs ? offs[i] : 0; };

  if (K == 0) {  // empty product: the epilogue of zeros
    for (int64_t bi = 0; bi < count; bi++) {
      float* cb = c + off(batch.cOffsets, bi);
      const float* rb = epi.residual ? epi.residual + off(batch.rOffsets, bi) : nullptr;
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          float v = 0.0f;
          if (epi.bias) v += epi.biasPerRow ? epi.bias[i] : epi.bias[j];
          float lanes[kW];
          activateDyn(epi.act, VecF::set1(v)).store(lanes);
          v = lanes[0];
          if (rb) v += rb[i * epi.ldr + j];
          cb[i * ldc + j] = v;
        }
    }
    return;
  }

  const int64_t panels = ceilDiv(N, kNR);
  // B: pre-packed, or packed now (once if every batch uses the same B).
  std::unique_ptr<float, decltype(&std::free)> ownB(nullptr, &std::free);
  const float* bp;
  int64_t bStride = 0;
  if (packed) {
    bp = packed->data;
  } else {
    bool shared = true;
    for (int64_t i = 1; i < count && batch.bOffsets; i++) shared = shared && batch.bOffsets[i] == batch.bOffsets[0];
    const int64_t nb = shared ? 1 : count;
    bStride = panels * K * kNR;
    ownB.reset(alignedFloats(static_cast<size_t>(nb * bStride)));
    float* dst = ownB.get();
    parallelFor(nb * panels, [&](int64_t t, int) {
      const int64_t bi = t / panels, p = t % panels;
      packPanelBImpl(b + off(batch.bOffsets, bi), ldb, transB, K, N, p, dst + bi * bStride + p * K * kNR);
    });
    bp = dst;
    if (shared) bStride = 0;
  }

  const int T = numThreads();
  // K blocks of at most kKC, split evenly. GEMV-like products (M < 4) take K whole: their A is a
  // few rows, and one block keeps the B panels one contiguous stream for the prefetcher.
  const int64_t kBlocks = M < 4 ? 1 : ceilDiv(K, kKC);
  const int64_t KC = ceilDiv(K, kBlocks);
  const int64_t rowTiles = ceilDiv(M, kMR);
  const int64_t MC = kMR * kMcTiles;

  // The row tiles of one (row block, K block) against panel p. A is either packed (apBlock, tile
  // t at t·kMR·kc) or read in place (aDirect: row-major at the block's first row and k0). Every
  // tile's epilogue pointers are moved to it; the first tile prefetches the next panel.
  auto tiles = [&](const float* apBlock, const float* aDirect, int64_t mc, int64_t row0, int64_t kc, int64_t k0, int64_t p,
                   int64_t p1, const float* bb, float* cb, const float* rb) {
    const bool last = k0 + kc >= K;
    const int64_t j0 = p * kNR;
    const int nc = static_cast<int>(std::min<int64_t>(kNR, N - j0));
    const float* bpanel = bb + (p * K + k0) * kNR;
    const int64_t nt = tileCount(mc);
    for (int64_t t = 0; t < nt; t++) {
      const int64_t ir = tileStart(mc, t, nt);
      const int mr = static_cast<int>(tileStart(mc, t + 1, nt) - ir);
      const int64_t row = row0 + ir;
      TileEpi te;
      if (last) {
        te.bias = epi.bias ? (epi.biasPerRow ? epi.bias + row : epi.bias + j0) : nullptr;
        te.biasPerRow = epi.biasPerRow;
        te.act = epi.act;
        te.res = rb ? rb + row * epi.ldr + j0 : nullptr;
        te.ldr = epi.ldr;
        te.alpha = epi.alpha;
      }
      const float* next = (ir == 0 && p + 1 < p1) ? bpanel + K * kNR : nullptr;
      float* ct = cb + row * ldc + j0;
#if defined(IJ_AVX512)
      if (aDirect) {
        kMicroDirect[mr](kc, aDirect + ir * lda, lda, bpanel, ct, ldc, nc, k0 > 0, last ? &te : nullptr, next);
        continue;
      }
#endif
      kMicro[mr](kc, apBlock + t * kMR * kc, bpanel, ct, ldc, nc, k0 > 0, last ? &te : nullptr, next);
    }
  };

  // Blocked path: tasks of (batch, row block, column range). Row blocks have near-equal tile
  // counts (512 rows: 126+126+126+134, not 168×3 + 8). A is read in place by the assembly
  // microkernel where it can be (AVX-512, A not transposed, every tile of the block >= 8 rows):
  // no pass packs it, so nothing memory-bound runs apart from the FMAs. Otherwise, with one A and
  // several column ranges, A is packed once into a buffer all threads read, rather than by every
  // column-range task again.
  const bool direct = kDirectA && !transA;
  // Tasks per batch for the packed path below (about two per thread); N is split first.
  const int64_t perBatch = std::max<int64_t>(1, ceilDiv(2 * T, count));
  const int64_t nParts = std::min(panels, perBatch);
  if (direct || (count == 1 && nParts > 1 && rowTiles >= 2)) {
    const int64_t rowBlocks = ceilDiv(rowTiles, kMcTiles);
    auto blockRow = [&](int64_t b) { return std::min(M, (rowTiles * b / rowBlocks) * kMR); };
    float* shared = nullptr;
    if (!direct) {
      shared = tSharedA.get(static_cast<size_t>(rowBlocks * kBlocks * MC * KC));
      const float* ab = a + off(batch.aOffsets, 0);
      parallelFor(rowBlocks * kBlocks, [&](int64_t t, int) {
        const int64_t b = t / kBlocks, kb = t % kBlocks;
        const int64_t i0 = blockRow(b), k0 = kb * KC;
        packA(ab, lda, transA, i0, blockRow(b + 1) - i0, k0, std::min(KC, K - k0), shared + t * MC * KC);
      });
    }
    const int64_t colParts = std::min(panels, std::max<int64_t>(1, ceilDiv(4 * T, count * rowBlocks)));
    parallelFor(count * rowBlocks * colParts, [&](int64_t task, int) {
      const int64_t cp = task % colParts, b = (task / colParts) % rowBlocks, bi = task / (colParts * rowBlocks);
      const int64_t i0 = blockRow(b), mc = blockRow(b + 1) - i0;
      const int64_t p0 = panels * cp / colParts, p1 = panels * (cp + 1) / colParts;
      if (mc <= 0 || p0 >= p1) return;
      const float* ab = a + off(batch.aOffsets, bi);
      float* cb = c + off(batch.cOffsets, bi);
      const float* bb = bp + bi * bStride;
      const float* rb = epi.residual ? epi.residual + off(batch.rOffsets, bi) : nullptr;
      const int64_t nt = tileCount(mc);
      const bool inPlace = direct && mc / nt >= kAsmMinRows;  // the smallest tile of the block
      for (int64_t kb = 0; kb < kBlocks; kb++) {
        const int64_t k0 = kb * KC, kc = std::min(KC, K - k0);
        const float* apBlock = nullptr;
        if (shared) {
          apBlock = shared + (b * kBlocks + kb) * MC * KC;
        } else if (!inPlace) {  // a block of few rows: pack it (cheap) for the intrinsics kernels
          float* ap = tPackA.get(static_cast<size_t>(MC * KC));
          packA(ab, lda, transA, i0, mc, k0, kc, ap);
          apBlock = ap;
        }
        const float* aDirect = inPlace ? ab + i0 * lda + k0 : nullptr;
        for (int64_t p = p0; p < p1; p++) tiles(apBlock, aDirect, mc, i0, kc, k0, p, p1, bb, cb, rb);
      }
    });
    return;
  }

  // Packed path without sharing (transposed A in batches, or one column range): each task owns
  // a range of row tiles × a range of B panels and packs its own A rows. Splitting N first means
  // every thread packs its A block once and streams only its own B panels; M is split only when
  // N is too narrow. About two tasks per thread absorbs uneven tails.
  const int64_t mParts = std::min(rowTiles, ceilDiv(perBatch, nParts));
  parallelFor(count * mParts * nParts, [&](int64_t task, int) {
    const int64_t np = task % nParts, rest = task / nParts;
    const int64_t mp = rest % mParts, bi = rest / mParts;
    const int64_t r0 = std::min(M, (rowTiles * mp / mParts) * kMR), r1 = std::min(M, (rowTiles * (mp + 1) / mParts) * kMR);
    const int64_t p0 = panels * np / nParts, p1 = panels * (np + 1) / nParts;
    if (r0 >= r1 || p0 >= p1) return;
    const float* ab = a + off(batch.aOffsets, bi);
    float* cb = c + off(batch.cOffsets, bi);
    const float* bb = bp + bi * bStride;
    const float* rb = epi.residual ? epi.residual + off(batch.rOffsets, bi) : nullptr;
    float* ap = tPackA.get(static_cast<size_t>(MC * KC));
    for (int64_t i0 = r0; i0 < r1; i0 += MC) {
      const int64_t mc = std::min(MC, r1 - i0);
      for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0);
        packA(ab, lda, transA, i0, mc, k0, kc, ap);
        for (int64_t p = p0; p < p1; p++) tiles(ap, nullptr, mc, i0, kc, k0, p, p1, bb, cb, rb);
      }
    }
  });
}

}  // namespace inferjit
