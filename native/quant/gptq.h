// GPTQ's two heavy steps (src/quant/gptq.ts), in double precision like the TypeScript they
// replace: the inverse-Hessian factor (O(K³)) and the column loop with its batched updates
// (O(N·K²)). In TypeScript a 1.1B down projection (K = 5632) took minutes for each.
#pragma once

#include <cstdint>

namespace inferjit {

// U [K, K] row-major: the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U) for a symmetric positive
// definite H [K, K]. With J the order-reversing permutation, J H J = M Mᵀ (M lower) gives
// H = R Rᵀ for the upper R = J M J, so H⁻¹ = R⁻ᵀ R⁻¹ and U = R⁻¹ = J M⁻¹ J: one Cholesky and one
// triangular inverse. Returns −1, or the column of H (in H's order) where it is not positive definite.
int64_t gptqInverseFactor(const double* H, int64_t K, double* U);

// The GPTQ loop over columns in Hessian order, in blocks of `block` columns: each column's codes
// (numerics.ts weightCode with the given scales), its error divided by U's diagonal, the update of
// the block's later columns, then the batched update of the columns after the block (summed over
// the block's columns in order, as the TypeScript does). W [N, K] row-major with its columns already
// in Hessian order (column i is the weight's column perm[i]), updated in place; U [K, K] in the same
// order; scales [N, K / groupSize] by the weight's own column groups; codes [N, K] written at the
// weight's own columns. Rows run on the thread pool.
void gptqColumns(double* W, int64_t N, int64_t K, const double* U, const float* scales, int64_t groupSize, const int32_t* perm, int format,
                 int64_t block, float* codes);

}  // namespace inferjit
