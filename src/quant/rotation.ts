// Hadamard rotations for W8A8 (QuaRot-style, online): before a linear site, the activation
// x [tokens, F] is multiplied by an orthonormal H [F, F] and the consumers' weights W [N, F] by the
// same H (W ← W·H), so x·Wᵀ = (x·H)·(W·H)ᵀ exactly in real arithmetic (H·Hᵀ = I). A token's few
// huge channels are spread over all F rotated channels, so the per-token int8 scale (set by the
// token's largest value) no longer starves every other channel of precision.
// H is Sylvester's Hadamard matrix scaled by 1/√B, block-diagonal with blocks of B, the largest
// power of two dividing F (B = F when F is a power of two). Sylvester's matrix is symmetric, so
// H = Hᵀ and x·H is the fast Walsh–Hadamard transform of each block of x.

/** Block size of F's rotation: the largest power of two dividing F. */
export function hadamardBlock(F: number): number {
  if (!Number.isInteger(F) || F < 1) throw new RangeError(`rotation: size must be a positive integer, got ${F}`);
  return F & -F;
}

/** Refuses an odd F: its only power-of-two block is 1 (the identity, no rotation). */
export function checkRotatable(F: number): void {
  if (hadamardBlock(F) < 2) throw new RangeError(`quantize: option "rotate" needs the rotated activation's size to have a power-of-two factor ≥ 2 (a block-diagonal Hadamard of that block); got F = ${F}, which is odd`);
}

/** The orthonormal block-diagonal Hadamard matrix [F, F] (row-major, f32). */
export function hadamardMatrix(F: number): Float32Array {
  checkRotatable(F);
  const B = hadamardBlock(F);
  const H = new Float32Array(F * F);
  const c = 1 / Math.sqrt(B);
  for (let b = 0; b < F; b += B) {
    for (let i = 0; i < B; i++) {
      // Sylvester: H[i, j] = (−1)^popcount(i & j)
      for (let j = 0; j < B; j++) H[(b + i) * F + b + j] = popcount(i & j) & 1 ? -c : c;
    }
  }
  return H;
}

function popcount(v: number): number {
  let n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}

/** x·H in place for one row of F values (fast Walsh–Hadamard per block, in f64). */
export function rotateRow(row: Float64Array | Float32Array, F: number): void {
  const B = hadamardBlock(F), c = 1 / Math.sqrt(B);
  for (let b = 0; b < F; b += B) {
    for (let h = 1; h < B; h <<= 1) {
      for (let i = b; i < b + B; i += 2 * h) {
        for (let j = i; j < i + h; j++) {
          const u = row[j], v = row[j + h];
          row[j] = u + v;
          row[j + h] = u - v;
        }
      }
    }
  }
  for (let j = 0; j < F; j++) row[j] *= c;
}

/** W ← W·H for a row-major weight [N, F] (each output row rotated like an activation row). */
export function rotateWeight(W: Float32Array, N: number, F: number): void {
  const row = new Float64Array(F);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < F; k++) row[k] = W[n * F + k];
    rotateRow(row, F);
    for (let k = 0; k < F; k++) W[n * F + k] = row[k];
  }
}
