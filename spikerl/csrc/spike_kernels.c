/* CPU kernels for the spiking layers (fp32). Loaded through ctypes by spikerl/native.py, which
 * compiles this file once per machine; every kernel has a pure-torch twin in spikerl/lif.py that
 * the tests compare it with.
 *
 * Build flags matter: -ffp-contract=off keeps a*b+c as two roundings, so the LIF recurrences
 * round exactly like the torch ops they replace and give bit-identical spikes for the same input
 * currents.
 *
 * Layouts: every matrix is row-major and contiguous. Spike matrices hold exact 0.0f / 1.0f.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define CHUNK 32 /* output columns per packed weight slab: four AVX2 registers */
#define GCHUNK 16 /* output columns per pass of the weight-gradient scatter: two AVX2 registers */

#if defined(__AVX2__)
static int32_t compact_lut[256][8]; /* for each 8-bit mask, the positions of its set bits, in order */

/* filled when the library is loaded, before any thread can call a kernel (a seed batch calls the
 * kernels from several threads at once) */
__attribute__((constructor)) static void compact_lut_init(void) {
    for (int mask = 0; mask < 256; mask++) {
        int m = 0;
        for (int j = 0; j < 8; j++)
            if (mask & (1 << j)) compact_lut[mask][m++] = j;
        for (; m < 8; m++) compact_lut[mask][m] = 0;
    }
}
#endif

/* How one row r of a spike matrix x [R, K] is listed (mode[r]); every row lists the fewest inputs:
 *   LIST_ACTIVE:  W·x_r = Σ over active k of W_k                          (d·K entries at density d)
 *   LIST_SILENT:  W·x_r = W·1 − Σ over silent k of W_k                    ((1 − d)·K entries)
 *   LIST_CHANGED: W·x_r = W·x_{r−step} + Σ over k that turned on of W_k − Σ over k that turned off
 *                 (rows of the same sample one timestep earlier: a spiking layer's inputs mostly
 *                 repeat from one step to the next, so this list is often the shortest of the three).
 * Each row's list holds its "plus" entries, then its "minus" entries: cnt[2r] and cnt[2r + 1]. */
enum { LIST_ACTIVE = 0, LIST_SILENT = 1, LIST_CHANGED = 2 };

#if defined(__AVX2__)
/* the positions of the set bits of a K-bit row mask, in increasing order, 8 at a time through the LUT */
static int32_t emit_bits(const uint64_t* words, int64_t nwords, int32_t* out) {
    int32_t m = 0;
    for (int64_t w = 0; w < nwords; w++) {
        uint64_t bits = words[w];
        for (int byte = 0; bits && byte < 8; byte++, bits >>= 8) {
            unsigned hit = (unsigned)(bits & 0xff);
            __m256i pos = _mm256_loadu_si256((const __m256i*)compact_lut[hit]);
            _mm256_storeu_si256((__m256i*)(out + m), _mm256_add_epi32(pos, _mm256_set1_epi32((int32_t)(w * 64 + byte * 8))));
            m += __builtin_popcount(hit);
        }
    }
    return m;
}
#else
static int32_t emit_bits(const uint64_t* words, int64_t nwords, int32_t* out) {
    int32_t m = 0;
    for (int64_t w = 0; w < nwords; w++)
        for (uint64_t bits = words[w]; bits; bits &= bits - 1) out[m++] = (int32_t)(w * 64 + __builtin_ctzll(bits));
    return m;
}
#endif

/* Lists the rows of x [R, K] for spike_matmul: mode[r], cnt[2r], cnt[2r + 1], and the entries at
 * idx[r*K ...] (room for R*K + 8 entries: the LUT stores 8 at a time). Rows r >= step may list
 * what changed since row r − step (step = rows per timestep, or 0 for none). K <= 4096.
 * bits holds R * ceil(K/64) words: each row's 1-inputs as a bit mask, bit k of word k/64. With
 * have_bits the caller filled it (popsan_lif_forward does, for the spikes it writes) and x is not
 * read; otherwise it is scratch, built from x.
 * order receives the rows in the order spike_matmul should compute them: timestep by timestep
 * (a changed-list row needs its predecessor), and within a timestep grouped by mode, so that
 * the four rows computed together have lists of the same kind.
 * Returns the number of entries listed, or -1 if some entry is neither 0 nor 1 (the caller then
 * multiplies densely; nothing else is written). */
int64_t spike_lists(const float* restrict x, int64_t R, int64_t K, int64_t step, uint64_t* restrict bits,
                    int32_t* restrict idx, int32_t* restrict cnt, int8_t* restrict mode, int32_t* restrict order,
                    int32_t have_bits) {
    const int64_t nw = (K + 63) / 64;
    int other = 0;
    for (int64_t r = 0; r < R && !have_bits; r++) {
        const float* xr = x + r * K;
        uint64_t* br = bits + r * nw;
        for (int64_t w = 0; w < nw; w++) br[w] = 0;
        int64_t k = 0;
#if defined(__AVX2__)
        const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
        for (; k + 8 <= K; k += 8) {
            __m256 xv = _mm256_loadu_ps(xr + k);
            int zeros = _mm256_movemask_ps(_mm256_cmp_ps(xv, zero, _CMP_EQ_OQ));
            int ones = _mm256_movemask_ps(_mm256_cmp_ps(xv, one, _CMP_EQ_OQ));
            other |= ~(zeros | ones) & 0xff;
            br[k >> 6] |= (uint64_t)ones << (k & 63);
        }
#endif
        for (; k < K; k++) {
            other |= xr[k] != 0.0f && xr[k] != 1.0f;
            if (xr[k] == 1.0f) br[k >> 6] |= (uint64_t)1 << (k & 63);
        }
    }
    if (other) return -1;
    const uint64_t last = (K & 63) ? (((uint64_t)1 << (K & 63)) - 1) : ~(uint64_t)0;
    uint64_t tmp[2][64]; /* K <= 4096: the caller checks */
    int64_t total = 0;
    for (int64_t r = 0; r < R; r++) {
        const uint64_t* br = bits + r * nw;
        int32_t active = 0, changed = INT32_MAX;
        for (int64_t w = 0; w < nw; w++) active += __builtin_popcountll(br[w]);
        int32_t silent = (int32_t)K - active;
        if (step > 0 && r >= step) {
            const uint64_t* bp = br - step * nw;
            changed = 0;
            for (int64_t w = 0; w < nw; w++) changed += __builtin_popcountll(br[w] ^ bp[w]);
        }
        int32_t* ir = idx + r * K;
        if (active <= silent && active <= changed) {
            mode[r] = LIST_ACTIVE;
            cnt[2 * r] = emit_bits(br, nw, ir);
            cnt[2 * r + 1] = 0;
        } else if (changed <= silent) {
            const uint64_t* bp = br - step * nw;
            for (int64_t w = 0; w < nw; w++) {
                tmp[0][w] = br[w] & ~bp[w];
                tmp[1][w] = bp[w] & ~br[w];
            }
            mode[r] = LIST_CHANGED;
            cnt[2 * r] = emit_bits(tmp[0], nw, ir);
            cnt[2 * r + 1] = emit_bits(tmp[1], nw, ir + cnt[2 * r]);
        } else {
            for (int64_t w = 0; w < nw; w++) tmp[1][w] = ~br[w] & (w == nw - 1 ? last : ~(uint64_t)0);
            mode[r] = LIST_SILENT;
            cnt[2 * r] = 0;
            cnt[2 * r + 1] = emit_bits(tmp[1], nw, ir);
        }
        total += cnt[2 * r] + cnt[2 * r + 1];
    }
    int64_t block = step > 0 ? step : R, o = 0;
    for (int64_t r0 = 0; r0 < R; r0 += block) {
        int64_t r1 = r0 + block < R ? r0 + block : R;
        for (int m = LIST_ACTIVE; m <= LIST_CHANGED; m++)
            for (int64_t r = r0; r < r1; r++)
                if (mode[r] == m) order[o++] = (int32_t)r;
    }
    return total;
}

/* Repacks nn.Linear's weight w [N, K] into slabs packed[c][k][j] = w[c*CHUNK + j][k], zero past N,
 * so the CHUNK weights that one input adds to one slab of outputs are contiguous, and writes
 * rowsum[n] = sum_k w[n][k] (W·1, where silent-listed rows start). Full 8 x 8 blocks are
 * transposed in registers; the edges go one element at a time. */
void pack_weight(const float* restrict w, float* restrict packed, float* restrict rowsum, int64_t K, int64_t N) {
    int64_t chunks = (N + CHUNK - 1) / CHUNK;
    for (int64_t c = 0; c < chunks; c++) {
        float* slab = packed + c * K * CHUNK;
        for (int64_t j0 = 0; j0 < CHUNK; j0 += 8) {
            int64_t n0 = c * CHUNK + j0, k = 0;
#if defined(__AVX2__)
            if (n0 + 8 <= N) {
                for (; k + 8 <= K; k += 8) {
                    __m256 r0 = _mm256_loadu_ps(w + (n0 + 0) * K + k), r1 = _mm256_loadu_ps(w + (n0 + 1) * K + k);
                    __m256 r2 = _mm256_loadu_ps(w + (n0 + 2) * K + k), r3 = _mm256_loadu_ps(w + (n0 + 3) * K + k);
                    __m256 r4 = _mm256_loadu_ps(w + (n0 + 4) * K + k), r5 = _mm256_loadu_ps(w + (n0 + 5) * K + k);
                    __m256 r6 = _mm256_loadu_ps(w + (n0 + 6) * K + k), r7 = _mm256_loadu_ps(w + (n0 + 7) * K + k);
                    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                    float* dst = slab + k * CHUNK + j0;
                    _mm256_storeu_ps(dst + 0 * CHUNK, _mm256_permute2f128_ps(u0, u4, 0x20));
                    _mm256_storeu_ps(dst + 1 * CHUNK, _mm256_permute2f128_ps(u1, u5, 0x20));
                    _mm256_storeu_ps(dst + 2 * CHUNK, _mm256_permute2f128_ps(u2, u6, 0x20));
                    _mm256_storeu_ps(dst + 3 * CHUNK, _mm256_permute2f128_ps(u3, u7, 0x20));
                    _mm256_storeu_ps(dst + 4 * CHUNK, _mm256_permute2f128_ps(u0, u4, 0x31));
                    _mm256_storeu_ps(dst + 5 * CHUNK, _mm256_permute2f128_ps(u1, u5, 0x31));
                    _mm256_storeu_ps(dst + 6 * CHUNK, _mm256_permute2f128_ps(u2, u6, 0x31));
                    _mm256_storeu_ps(dst + 7 * CHUNK, _mm256_permute2f128_ps(u3, u7, 0x31));
                }
            }
#endif
            for (int64_t j = j0; j < j0 + 8; j++) {
                int64_t n = c * CHUNK + j;
                for (int64_t kk = k; kk < K; kk++) slab[kk * CHUNK + j] = n < N ? w[n * K + kk] : 0.0f;
            }
        }
    }
    for (int64_t n = 0; n < N; n++) {  /* eight partial sums per row: a single chain would be latency-bound */
        const float* row = w + n * K;
        float part[8] = {0}, sum = 0.0f;
        int64_t k = 0;
#if defined(__AVX2__)
        __m256 acc = _mm256_setzero_ps();
        for (; k + 8 <= K; k += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(row + k));
        _mm256_storeu_ps(part, acc);
#endif
        for (int j = 0; j < 8; j++) sum += part[j];
        for (; k < K; k++) sum += row[k];
        rowsum[n] = sum;
    }
}

static void store_chunk(float* dst, const float* src, int64_t width) {
    memcpy(dst, src, (size_t)width * sizeof(float));
}

#if defined(__AVX2__)
#define INLINE static inline __attribute__((always_inline))

/* a + w, or a − w: `sub` is a constant at every call, so each loop below compiles to one kind */
INLINE __m256 acc_op(__m256 a, const float* w, int sub) {
    return sub ? _mm256_sub_ps(a, _mm256_loadu_ps(w)) : _mm256_add_ps(a, _mm256_loadu_ps(w));
}

/* acc[0..3] ± the slab rows listed in ir[from .. to) (what is left of one row's list) */
INLINE void listed_tail(const float* slab, const int32_t* ir, int32_t from, int32_t to, __m256* acc, int sub) {
    __m256 a = acc[0], b = acc[1], c = acc[2], d = acc[3];
    for (int32_t p = from; p < to; p++) {
        const float* w = slab + (int64_t)ir[p] * CHUNK;
        a = acc_op(a, w, sub);
        b = acc_op(b, w + 8, sub);
        c = acc_op(c, w + 16, sub);
        d = acc_op(d, w + 24, sub);
    }
    acc[0] = a; acc[1] = b; acc[2] = c; acc[3] = d;
}

/* two rows' lists in lockstep (eight independent accumulator chains), then what is left of each */
INLINE void listed_pair(const float* slab, const int32_t* i0, int32_t m0, const int32_t* i1, int32_t m1,
                        __m256* x, __m256* y, int sub) {
    __m256 a0 = x[0], a1 = x[1], a2 = x[2], a3 = x[3], c0 = y[0], c1 = y[1], c2 = y[2], c3 = y[3];
    int32_t q = 0, both = m0 < m1 ? m0 : m1;
    for (; q < both; q++) {
        const float *w0 = slab + (int64_t)i0[q] * CHUNK, *w1 = slab + (int64_t)i1[q] * CHUNK;
        a0 = acc_op(a0, w0, sub);      c0 = acc_op(c0, w1, sub);
        a1 = acc_op(a1, w0 + 8, sub);  c1 = acc_op(c1, w1 + 8, sub);
        a2 = acc_op(a2, w0 + 16, sub); c2 = acc_op(c2, w1 + 16, sub);
        a3 = acc_op(a3, w0 + 24, sub); c3 = acc_op(c3, w1 + 24, sub);
    }
    x[0] = a0; x[1] = a1; x[2] = a2; x[3] = a3; y[0] = c0; y[1] = c1; y[2] = c2; y[3] = c3;
    listed_tail(slab, i0, q, m0, x, sub);
    listed_tail(slab, i1, q, m1, y, sub);
}
#endif

/* The starting value of row r's outputs n0 .. n0+width for its list mode (zero past width). */
static inline const float* row_base(int8_t mode, const float* bias, const float* bias_all, const float* out,
                                    int64_t r, int64_t step, int64_t N, int64_t n0, int64_t width, float* tmp) {
    if (mode == LIST_ACTIVE) return bias;
    if (mode == LIST_SILENT) return bias_all;
    if (width == CHUNK) return out + (r - step) * N + n0;
    memset(tmp, 0, CHUNK * sizeof(float));
    memcpy(tmp, out + (r - step) * N + n0, (size_t)width * sizeof(float));
    return tmp;
}

/* out[r, n] = b[n] + Σ_k w[n, k] x[r, k] for a 0/1 x, from spike_lists' lists (b NULL: no bias, as in
 * DSRL; b_all is then W·1): each row starts at b (active list), at b + W·1 = b_all (silent list) or at out[r − step] (changed list), adds the
 * weight columns of its plus entries and subtracts those of its minus entries. With spikes at
 * density d this does about min(d, 1 − d, changed share)·K adds per output instead of K
 * multiply-adds. Rows are computed in `order`, timestep by timestep (blocks of `step` rows, or all
 * R when step is 0), two rows of a block at a time per 32-column slab: that keeps eight
 * independent accumulator chains in flight and loads one index per four vectors, and a
 * changed-list row's predecessor is always finished. */
void spike_matmul(const int32_t* idx, const int32_t* cnt, const int8_t* mode, const int32_t* order,
                  const float* packed, const float* b, const float* b_all, float* out,
                  int64_t R, int64_t K, int64_t N, int64_t step) {
    int64_t chunks = (N + CHUNK - 1) / CHUNK;
    const int64_t block = step > 0 ? step : R;  /* a changed-list row's predecessor is in an earlier block */
    for (int64_t c = 0; c < chunks; c++) {
        const float* slab = packed + c * K * CHUNK;
        int64_t n0 = c * CHUNK, width = N - n0 < CHUNK ? N - n0 : CHUNK;
        float bias[CHUNK] = {0}, bias_all[CHUNK] = {0}, tmp[2][CHUNK];
        if (b) memcpy(bias, b + n0, (size_t)width * sizeof(float));
        memcpy(bias_all, b_all + n0, (size_t)width * sizeof(float));
        for (int64_t qb = 0; qb < R; qb += block) {
            const int64_t qe = qb + block < R ? qb + block : R;
            int64_t q0 = qb;
#if defined(__AVX2__)
            for (; q0 + 2 <= qe; q0 += 2) {
                const int64_t r0 = order[q0], r1 = order[q0 + 1];
                const float* s0 = row_base(mode[r0], bias, bias_all, out, r0, step, N, n0, width, tmp[0]);
                const float* s1 = row_base(mode[r1], bias, bias_all, out, r1, step, N, n0, width, tmp[1]);
                __m256 x[4], y[4];
                for (int v = 0; v < 4; v++) {
                    x[v] = _mm256_loadu_ps(s0 + 8 * v);
                    y[v] = _mm256_loadu_ps(s1 + 8 * v);
                }
                const int32_t *i0 = idx + r0 * K, *i1 = idx + r1 * K;
                const int32_t p0 = cnt[2 * r0], p1 = cnt[2 * r1];
                listed_pair(slab, i0, p0, i1, p1, x, y, 0);
                listed_pair(slab, i0 + p0, cnt[2 * r0 + 1], i1 + p1, cnt[2 * r1 + 1], x, y, 1);  /* minus entries */
                float* o0 = width == CHUNK ? out + r0 * N + n0 : tmp[0];
                float* o1 = width == CHUNK ? out + r1 * N + n0 : tmp[1];
                for (int v = 0; v < 4; v++) {
                    _mm256_storeu_ps(o0 + 8 * v, x[v]);
                    _mm256_storeu_ps(o1 + 8 * v, y[v]);
                }
                if (width < CHUNK) {
                    store_chunk(out + r0 * N + n0, tmp[0], width);
                    store_chunk(out + r1 * N + n0, tmp[1], width);
                }
            }
#endif
            for (; q0 < qe; q0++) {
                const int64_t r = order[q0];
                const int32_t* ir = idx + r * K;
                float acc[CHUNK];
                memcpy(acc, row_base(mode[r], bias, bias_all, out, r, step, N, n0, width, tmp[0]), sizeof(acc));
                int32_t plus = cnt[2 * r], minus = cnt[2 * r + 1];
                for (int32_t q = 0; q < plus; q++) {
                    const float* w = slab + (int64_t)ir[q] * CHUNK;
                    for (int j = 0; j < CHUNK; j++) acc[j] += w[j];
                }
                for (int32_t q = plus; q < plus + minus; q++) {
                    const float* w = slab + (int64_t)ir[q] * CHUNK;
                    for (int j = 0; j < CHUNK; j++) acc[j] -= w[j];
                }
                store_chunk(out + r * N + n0, acc, width);
            }
        }
    }
}

/* The weight gradient of spike_matmul: gw = gᵀ·x [N, K] for g [R, N], from x's lists.
 * A changed-list row's input is x_{r−step} plus its own list, so unrolling the chains,
 *     gᵀ·x = Σ_r h_rᵀ·(plus_r − minus_r) + (Σ over silent-list rows of h_r)ᵀ·1,
 * where h_r = g_r + h_{r+step} if row r + step is a changed-list row, else g_r (h [R, N] is
 * scratch). Each slab of GCHUNK output columns is accumulated in scratch [K][GCHUNK] (16 KiB for
 * K = 256: it stays in L1), then transposed into gw. */
void spike_matmul_grad_weight(const int32_t* restrict idx, const int32_t* restrict cnt, const int8_t* restrict mode,
                              const float* restrict g, float* restrict h, float* restrict gw, float* restrict scratch,
                              int64_t R, int64_t K, int64_t N, int64_t step) {
    memcpy(h, g, (size_t)(R * N) * sizeof(float));
    for (int64_t r = R - 1; r >= step && step > 0; r--)
        if (mode[r] == LIST_CHANGED) {
            float* hp = h + (r - step) * N;
            const float* hr = h + r * N;
            for (int64_t n = 0; n < N; n++) hp[n] += hr[n];
        }
    int64_t chunks = (N + GCHUNK - 1) / GCHUNK;
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n0 = c * GCHUNK, width = N - n0 < GCHUNK ? N - n0 : GCHUNK;
        float ones[GCHUNK] = {0};  /* Σ over silent-list rows of h_r: added to every input's column */
        for (int64_t r = 0; r < R; r++)
            if (mode[r] == LIST_SILENT)
                for (int64_t j = 0; j < width; j++) ones[j] += h[r * N + n0 + j];
        for (int64_t k = 0; k < K; k++) memcpy(scratch + k * GCHUNK, ones, sizeof(ones));
        for (int64_t r = 0; r < R; r++) {
            const int32_t* ir = idx + r * K;
            const int32_t plus = cnt[2 * r], minus = cnt[2 * r + 1];
            float row[GCHUNK] = {0};
            memcpy(row, h + r * N + n0, (size_t)width * sizeof(float));
            int32_t q = 0;
#if defined(__AVX2__)
            __m256 g0 = _mm256_loadu_ps(row), g1 = _mm256_loadu_ps(row + 8);
            for (; q < plus; q++) {
                float* s = scratch + (int64_t)ir[q] * GCHUNK;
                _mm256_storeu_ps(s, _mm256_add_ps(_mm256_loadu_ps(s), g0));
                _mm256_storeu_ps(s + 8, _mm256_add_ps(_mm256_loadu_ps(s + 8), g1));
            }
            for (; q < plus + minus; q++) {
                float* s = scratch + (int64_t)ir[q] * GCHUNK;
                _mm256_storeu_ps(s, _mm256_sub_ps(_mm256_loadu_ps(s), g0));
                _mm256_storeu_ps(s + 8, _mm256_sub_ps(_mm256_loadu_ps(s + 8), g1));
            }
#endif
            for (; q < plus; q++) {
                float* s = scratch + (int64_t)ir[q] * GCHUNK;
                for (int j = 0; j < GCHUNK; j++) s[j] += row[j];
            }
            for (; q < plus + minus; q++) {
                float* s = scratch + (int64_t)ir[q] * GCHUNK;
                for (int j = 0; j < GCHUNK; j++) s[j] -= row[j];
            }
        }
        for (int64_t j = 0; j < width; j++)
            for (int64_t k = 0; k < K; k++) gw[(n0 + j) * K + k] = scratch[k * GCHUNK + j];
    }
}

/* out = x·wᵀ + b for a few rows (acting at batch 1: T rows): x [R, K], nn.Linear's w [N, K]; b NULL: no bias.
 * Each output is a dot product along contiguous rows of w and x, so w needs no repacking; BLAS
 * spends most of its time on setup at these sizes. */
void linear_rows(const float* restrict x, const float* restrict w, const float* restrict b, float* restrict out,
                 int64_t R, int64_t K, int64_t N) {
    int64_t n = 0;
#if defined(__AVX2__) && defined(__FMA__)
    {
        /* eight outputs at once: eight accumulators, one x load shared, then one transposing reduction */
        int64_t K8 = K - K % 8;
        for (; n + 8 <= N; n += 8) {
            const float* w0 = w + n * K;
            for (int64_t r = 0; r < R; r++) {
                const float* xr = x + r * K;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                for (int64_t k = 0; k < K8; k += 8) {
                    __m256 xv = _mm256_loadu_ps(xr + k);
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + k), xv, a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + K + k), xv, a1);
                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 2 * K + k), xv, a2);
                    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 3 * K + k), xv, a3);
                    a4 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 4 * K + k), xv, a4);
                    a5 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 5 * K + k), xv, a5);
                    a6 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 6 * K + k), xv, a6);
                    a7 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 7 * K + k), xv, a7);
                }
                __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
                __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
                __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
                float tail[8];
                for (int j = 0; j < 8; j++) {
                    float t = 0.0f;
                    for (int64_t k = K8; k < K; k++) t += w0[j * K + k] * xr[k];
                    tail[j] = t;
                }
                sums = _mm256_add_ps(sums, _mm256_loadu_ps(tail));
                _mm256_storeu_ps(out + r * N + n, b ? _mm256_add_ps(_mm256_loadu_ps(b + n), sums) : sums);
            }
        }
    }
#endif
    for (; n < N; n++) {
        const float* wn = w + n * K;
        for (int64_t r = 0; r < R; r++) {
            const float* xr = x + r * K;
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k++) sum += wn[k] * xr[k];
            out[r * N + n] = b ? b[n] + sum : sum;
        }
    }
}

/* PopSAN's deterministic encoder: accumulator v_1 = a; o_t = [v_t > 0.999]; v_{t+1} = (v_t - 0.999 o_t) + a.
 * a [M] (stimulation), o [T, M]. Same operations in the same order as spikerl.population._regular_spikes. */
void regular_spikes(const float* restrict a, float* restrict o, int64_t T, int64_t M) {
    const float th = 0.999f;
    float v[512];
    for (int64_t e0 = 0; e0 < M; e0 += 512) {
        int64_t n = M - e0 < 512 ? M - e0 : 512;
        const float* ae = a + e0;
        for (int64_t t = 0; t < T; t++) {
            float* ot = o + t * M + e0;
            for (int64_t e = 0; e < n; e++) {
                float ve = t ? v[e] + ae[e] : ae[e];
                float s = ve > th ? 1.0f : 0.0f;
                ot[e] = s;
                v[e] = ve - th * s;
            }
        }
    }
}

#define BLOCK 512 /* elements whose recurrence state stays in L1 while t runs */

/* PopSAN LIF over currents i [T, M] (M = batch x neurons), zero initial state:
 *   c_t = i_t + 0.5 c_{t-1};  v_t = c_t + (0.75 v_{t-1}) keep_{t-1};  keep_t = [v_t <= 0.5];  o_t = 1 - keep_t
 * Writes o [T, M] and, when v_rec is not NULL, v [T, M] (the membrane compared with the threshold).
 * When bits is not NULL (N neurons per row, N % 8 == 0), also each row's spikes as the bit masks
 * spike_lists reads: T*(M/N) rows of ceil(N/64) words.
 * Same operations in the same order as spikerl.lif._popsan_forward (a NaN membrane spikes in both). */
void popsan_lif_forward(const float* restrict i, float* restrict o, float* restrict v_rec, int64_t T, int64_t M,
                        uint64_t* restrict bits, int64_t N) {
    float c[BLOCK], v[BLOCK], keep[BLOCK];
    const int64_t nw = (N + 63) / 64, B = bits ? M / N : 0;
    if (bits) memset(bits, 0, (size_t)(T * B * nw) * sizeof(uint64_t));
    for (int64_t e0 = 0; e0 < M; e0 += BLOCK) {
        int64_t n = M - e0 < BLOCK ? M - e0 : BLOCK, e;
        for (int64_t t = 0; t < T; t++) {
            const float* it = i + t * M + e0;
            float* ot = o + t * M + e0;
            e = 0;
            /* where element e0 + e sits in the bit masks: row t*B + row_in, column col (no division per vector) */
            int64_t row_in = bits ? e0 / N : 0, col = bits ? e0 % N : 0;
#if defined(__AVX2__)
            const __m256 half = _mm256_set1_ps(0.5f), decay = _mm256_set1_ps(0.75f), one = _mm256_set1_ps(1.0f);
            for (; e + 8 <= n; e += 8) {
                __m256 ce = _mm256_loadu_ps(it + e), ve;
                if (t == 0) {
                    ve = ce;
                } else {
                    ce = _mm256_add_ps(ce, _mm256_mul_ps(half, _mm256_loadu_ps(c + e)));
                    ve = _mm256_add_ps(ce, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(v + e), decay),
                                                         _mm256_loadu_ps(keep + e)));
                }
                __m256 ke = _mm256_and_ps(_mm256_cmp_ps(ve, half, _CMP_LE_OQ), one);
                _mm256_storeu_ps(c + e, ce);
                _mm256_storeu_ps(v + e, ve);
                _mm256_storeu_ps(keep + e, ke);
                _mm256_storeu_ps(ot + e, _mm256_sub_ps(one, ke));
                if (bits) {  /* N % 8 == 0: these eight neurons are in one row */
                    unsigned fired = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(ve, half, _CMP_NLE_UQ));
                    bits[(t * B + row_in) * nw + (col >> 6)] |= (uint64_t)fired << (col & 63);
                    col += 8;
                    if (col == N) {
                        col = 0;
                        row_in++;
                    }
                }
            }
#endif
            for (; e < n; e++) {
                if (t == 0) {
                    c[e] = it[e];
                    v[e] = it[e];
                } else {
                    c[e] = it[e] + 0.5f * c[e];
                    v[e] = c[e] + (v[e] * 0.75f) * keep[e];
                }
                keep[e] = (float)(v[e] <= 0.5f);
                ot[e] = 1.0f - keep[e];
                if (bits) {
                    if (ot[e] != 0.0f) bits[(t * B + row_in) * nw + (col >> 6)] |= (uint64_t)1 << (col & 63);
                    if (++col == N) {
                        col = 0;
                        row_in++;
                    }
                }
            }
            if (v_rec) memcpy(v_rec + t * M + e0, v, (size_t)n * sizeof(float));
        }
    }
}

/* BPTT of popsan_lif_forward. With m_t = [|v_t - 0.5| < 0.5] (the rectangular surrogate),
 *   a_t = m_t grad_o_t,  d_t = ((1 - o_t) - v_t m_t) 0.75
 *   dL/dv_t = a_t + dL/dv_{t+1} d_t,   dL/di_t = dL/dv_t + 0.5 dL/di_{t+1}
 * Writes dL/di into g [T, M]. Same operations in the same order as spikerl.lif._PopSANLIF.backward. */
void popsan_lif_backward(const float* restrict v, const float* restrict o, const float* restrict grad_o,
                         float* restrict g, int64_t T, int64_t M) {
    for (int64_t e0 = 0; e0 < M; e0 += BLOCK) {
        int64_t n = M - e0 < BLOCK ? M - e0 : BLOCK, e;
        /* dL/dv, newest step first; dv_next holds dL/dv_{t+1} */
        for (int64_t t = T - 1; t >= 0; t--) {
            const float* vt = v + t * M + e0;
            const float* ot = o + t * M + e0;
            const float* got = grad_o + t * M + e0;
            float* gt = g + t * M + e0;
            const float* gn = gt + M;
            e = 0;
#if defined(__AVX2__)
            const __m256 half = _mm256_set1_ps(0.5f), decay = _mm256_set1_ps(0.75f), one = _mm256_set1_ps(1.0f);
            const __m256 sign = _mm256_set1_ps(-0.0f);
            for (; e + 8 <= n; e += 8) {
                __m256 ve = _mm256_loadu_ps(vt + e);
                __m256 ax = _mm256_andnot_ps(sign, _mm256_sub_ps(ve, half));
                __m256 m = _mm256_and_ps(_mm256_cmp_ps(ax, half, _CMP_LT_OQ), one);
                __m256 a = _mm256_mul_ps(m, _mm256_loadu_ps(got + e));
                if (t < T - 1) {
                    __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(one, _mm256_loadu_ps(ot + e)),
                                                           _mm256_mul_ps(ve, m)), decay);
                    a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(gn + e), d));
                }
                _mm256_storeu_ps(gt + e, a);
            }
#endif
            for (; e < n; e++) {
                float m = (float)(fabsf(vt[e] - 0.5f) < 0.5f);
                float a = m * got[e];
                if (t < T - 1) a = a + gn[e] * (((1.0f - ot[e]) - vt[e] * m) * 0.75f);
                gt[e] = a;
            }
        }
        /* dL/di_t = dL/dv_t + 0.5 dL/di_{t+1} */
        for (int64_t t = T - 2; t >= 0; t--) {
            float* gt = g + t * M + e0;
            const float* gn = gt + M;
            for (e = 0; e < n; e++) gt[e] = gt[e] + 0.5f * gn[e];
        }
    }
}

/* The whole PopSAN actor for a few samples (acting and evaluation at batch 1), no gradient, with
 * deterministic encoding. For each sample: stimulation a_k = exp((-0.5 (s - mu_k)^2) / sigma_k^2)
 * (the encoder's formula, term by term), regular spikes over T, then each spiking layer as
 * linear_rows + popsan_lif_forward, then the decoder's rates r = (1/T) sum_t o_t and
 * action_a = lim * tanh(sum_j dec_w[a, j] r[a*P + j] + dec_b[a]).
 * obs [B, D]; mean, std [D*P]; sizes [L + 1] (sizes[0] = D*P, sizes[L] = A*P); w[l] [sizes[l+1], sizes[l]];
 * scratch: T*(sizes[0] + 2*max(sizes[1..L])) + sizes[0] floats; out [B, A]. */
void popsan_act(const float* restrict obs, int64_t B, int64_t D, int64_t P, int64_t T, const float* restrict mean,
                const float* restrict std, int64_t L, const int64_t* sizes, const float* const* w,
                const float* const* b, const float* restrict dec_w, const float* restrict dec_b, float lim,
                float* restrict scratch, float* restrict out) {
    int64_t widest = 0;
    for (int64_t l = 1; l <= L; l++) widest = sizes[l] > widest ? sizes[l] : widest;
    const int64_t K0 = D * P, A = sizes[L] / P;
    float* a = scratch;
    float* x = a + K0;                 /* spikes into the current layer [T, K] */
    float* cur = x + T * (K0 > widest ? K0 : widest);
    float* spk = cur + T * widest;
    for (int64_t s = 0; s < B; s++) {
        const float* os = obs + s * D;
        for (int64_t k = 0; k < K0; k++) {
            float d = os[k / P] - mean[k], sd = std[k];
            a[k] = expf((-0.5f * (d * d)) / (sd * sd));
        }
        regular_spikes(a, x, T, K0);
        for (int64_t l = 0; l < L; l++) {
            linear_rows(x, w[l], b[l], cur, T, sizes[l], sizes[l + 1]);
            popsan_lif_forward(cur, spk, NULL, T, sizes[l + 1], NULL, sizes[l + 1]);
            memcpy(x, spk, (size_t)(T * sizes[l + 1]) * sizeof(float));
        }
        for (int64_t q = 0; q < A; q++) {
            float act = 0.0f;
            for (int64_t j = 0; j < P; j++) {
                float r = 0.0f;
                for (int64_t t = 0; t < T; t++) r += x[t * sizes[L] + q * P + j];
                act += dec_w[q * P + j] * (r / (float)T);
            }
            out[s * A + q] = lim * tanhf(act + dec_b[q]);
        }
    }
}

/* DSRL LIF (DESIGN §3.3), α = β = 0.5, threshold th, zero initial state, for B rows of N neurons over T steps:
 *   constant current (layer 1, i [B, N] = W0·x injected every step):  cur_t = i
 *   decaying current (layer 2, i [T, B, N] = W1·S0_t):                 cur_1 = i_1, cur_t = i_t + 0.5 cur_{t-1}
 *   u_1 = cur_1;  u_t = cur_t + 0.5 (u_{t-1} keep_{t-1});  keep_t = [u_t <= th];  s_t = 1 - keep_t
 * where u_{t-1} keep_{t-1} is the same-step reset (U set to 0 where a spike occurred).
 * Writes s [T, B, N]; u_rec [T, B, N] (U before the reset, the value compared with th) when not NULL; and when
 * bits is not NULL each (t, b) row's spikes as spike_lists' bit masks, ceil(N/64) words per row (any N: the
 * loop runs row by row, so eight neurons of a vector never straddle two rows).
 * Same operations in the same order as spikerl.lif._dsrl_forward (a NaN membrane spikes in both). */
void dsrl_lif_forward(const float* restrict i, float* restrict s, float* restrict u_rec, int64_t T, int64_t B,
                      int64_t N, float th, int32_t constant, uint64_t* restrict bits) {
    float cur[BLOCK], u[BLOCK], keep[BLOCK];
    const int64_t nw = (N + 63) / 64, M = B * N;
    if (bits) memset(bits, 0, (size_t)(T * B * nw) * sizeof(uint64_t));
    for (int64_t b = 0; b < B; b++) {
        for (int64_t n0 = 0; n0 < N; n0 += BLOCK) {  /* BLOCK is a multiple of 64: a vector's bits share a word */
            const int64_t n = N - n0 < BLOCK ? N - n0 : BLOCK, off = b * N + n0;
            for (int64_t t = 0; t < T; t++) {
                const float* it = constant ? i + off : i + t * M + off;
                float* st = s + t * M + off;
                uint64_t* bt = bits ? bits + (t * B + b) * nw : NULL;
                int64_t e = 0;
#if defined(__AVX2__)
                const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), thv = _mm256_set1_ps(th);
                for (; e + 8 <= n; e += 8) {
                    __m256 ce = _mm256_loadu_ps(it + e), ue;
                    if (t == 0) {
                        ue = ce;
                    } else {
                        if (!constant) ce = _mm256_add_ps(ce, _mm256_mul_ps(half, _mm256_loadu_ps(cur + e)));
                        ue = _mm256_add_ps(ce, _mm256_mul_ps(half, _mm256_mul_ps(_mm256_loadu_ps(u + e),
                                                                                 _mm256_loadu_ps(keep + e))));
                    }
                    __m256 ke = _mm256_and_ps(_mm256_cmp_ps(ue, thv, _CMP_LE_OQ), one);
                    _mm256_storeu_ps(cur + e, ce);
                    _mm256_storeu_ps(u + e, ue);
                    _mm256_storeu_ps(keep + e, ke);
                    _mm256_storeu_ps(st + e, _mm256_sub_ps(one, ke));
                    if (bt) {
                        unsigned fired = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(ue, thv, _CMP_NLE_UQ));
                        bt[(n0 + e) >> 6] |= (uint64_t)fired << ((n0 + e) & 63);
                    }
                }
#endif
                for (; e < n; e++) {
                    if (t == 0) {
                        cur[e] = it[e];
                        u[e] = it[e];
                    } else {
                        cur[e] = constant ? it[e] : it[e] + 0.5f * cur[e];
                        u[e] = cur[e] + 0.5f * (u[e] * keep[e]);
                    }
                    keep[e] = (float)(u[e] <= th);
                    st[e] = 1.0f - keep[e];
                    if (bt && st[e] != 0.0f) bt[(n0 + e) >> 6] |= (uint64_t)1 << ((n0 + e) & 63);
                }
                if (u_rec) memcpy(u_rec + t * M + off, u, (size_t)n * sizeof(float));
            }
        }
    }
}

/* BPTT of dsrl_lif_forward with the reset detached. With m_t = 1 / (100 |u_t - th| + 1)^2 (the fast sigmoid):
 *   dL/dU_t = m_t grad_s_t + (0.5 dL/dU_{t+1}) keep_t,   keep_t = 1 - s_t
 *   decaying current: dL/di_t = dL/dU_t + 0.5 dL/di_{t+1}, written to g [T, M]
 *   constant current: dL/di = Σ_t dL/dU_t (t = 1 first), written to gsum [M]; g [T, M] holds dL/dU
 * M = B·N. Same operations in the same order as spikerl.lif._DSRLLIF.backward. */
void dsrl_lif_backward(const float* restrict u, const float* restrict s, const float* restrict grad_s,
                       float* restrict g, float* restrict gsum, int64_t T, int64_t M, float th) {
    for (int64_t e0 = 0; e0 < M; e0 += BLOCK) {
        int64_t n = M - e0 < BLOCK ? M - e0 : BLOCK, e;
        for (int64_t t = T - 1; t >= 0; t--) {  /* dL/dU, newest step first; gn holds dL/dU_{t+1} */
            const float* ut = u + t * M + e0;
            const float* st = s + t * M + e0;
            const float* gst = grad_s + t * M + e0;
            float* gt = g + t * M + e0;
            const float* gn = gt + M;
            e = 0;
#if defined(__AVX2__)
            const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), thv = _mm256_set1_ps(th);
            const __m256 slope = _mm256_set1_ps(100.0f), sign = _mm256_set1_ps(-0.0f);
            for (; e + 8 <= n; e += 8) {
                __m256 x = _mm256_andnot_ps(sign, _mm256_sub_ps(_mm256_loadu_ps(ut + e), thv));
                x = _mm256_add_ps(_mm256_mul_ps(x, slope), one);
                __m256 a = _mm256_mul_ps(_mm256_div_ps(one, _mm256_mul_ps(x, x)), _mm256_loadu_ps(gst + e));
                if (t < T - 1)
                    a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(half, _mm256_loadu_ps(gn + e)),
                                                       _mm256_sub_ps(one, _mm256_loadu_ps(st + e))));
                _mm256_storeu_ps(gt + e, a);
            }
#endif
            for (; e < n; e++) {
                float x = fabsf(ut[e] - th) * 100.0f + 1.0f;
                float a = (1.0f / (x * x)) * gst[e];
                if (t < T - 1) a = a + (0.5f * gn[e]) * (1.0f - st[e]);
                gt[e] = a;
            }
        }
        if (gsum) {  /* dL/di = Σ_t dL/dU_t, oldest step first */
            float* out = gsum + e0;
            memcpy(out, g + e0, (size_t)n * sizeof(float));
            for (int64_t t = 1; t < T; t++) {
                const float* gt = g + t * M + e0;
                for (e = 0; e < n; e++) out[e] = out[e] + gt[e];
            }
        } else {  /* dL/di_t = dL/dU_t + 0.5 dL/di_{t+1} */
            for (int64_t t = T - 2; t >= 0; t--) {
                float* gt = g + t * M + e0;
                const float* gn = gt + M;
                for (e = 0; e < n; e++) gt[e] = gt[e] + 0.5f * gn[e];
            }
        }
    }
}

/* The whole DSRL actor for a few max-abs-normalised observations (acting and evaluation at batch 1), no
 * gradient. For each sample: sign split x = [max(o, 0), max(-o, 0)], i0 = W0·x, the constant-current
 * LIF over T, i1_t = W1·s0_t, the decaying-current LIF, the output integrator u = Σ_t W2·s1_t (t = 1 first)
 * and action = lim * tanh(u). No biases. obs [B, D]; w0 [N0, 2D], w1 [N1, N0], w2 [A, N1];
 * scratch: 2D + N0 + T*(N0 + 2*N1 + A) floats; out [B, A]. */
void dsrl_act(const float* restrict obs, int64_t B, int64_t D, int64_t N0, int64_t N1, int64_t A, int64_t T,
              const float* restrict w0, const float* restrict w1, const float* restrict w2, float th, float lim,
              float* restrict scratch, float* restrict out) {
    float* x = scratch;
    float* i0 = x + 2 * D;
    float* s0 = i0 + N0;
    float* i1 = s0 + T * N0;
    float* s1 = i1 + T * N1;
    float* y = s1 + T * N1;
    for (int64_t b = 0; b < B; b++) {
        const float* ob = obs + b * D;
        for (int64_t k = 0; k < D; k++) {  /* a NaN passes through, as in clamp */
            x[k] = ob[k] < 0.0f ? 0.0f : ob[k];
            x[D + k] = -ob[k] < 0.0f ? 0.0f : -ob[k];
        }
        linear_rows(x, w0, NULL, i0, 1, 2 * D, N0);
        dsrl_lif_forward(i0, s0, NULL, T, 1, N0, th, 1, NULL);
        linear_rows(s0, w1, NULL, i1, T, N0, N1);
        dsrl_lif_forward(i1, s1, NULL, T, 1, N1, th, 0, NULL);
        linear_rows(s1, w2, NULL, y, T, N1, A);
        for (int64_t a = 0; a < A; a++) {
            float acc = y[a];
            for (int64_t t = 1; t < T; t++) acc = acc + y[t * A + a];
            out[b * A + a] = lim * tanhf(acc);
        }
    }
}

/* bf16 rounding of n floats, src -> dst (may be the same buffer), kept as fp32: what torch's casts
 * fp32 -> bf16 -> fp32 give (round to nearest, ties to even; a NaN stays a NaN). The bf16 recipe on
 * these kernels (spikerl/lif.py) rounds weights and biases with it before the fp32 sums, and the
 * sums after them, as autocast's bf16 matmuls round their fp32 accumulators once on output. */
void round_bf16(const float* src, float* dst, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        uint32_t u;
        memcpy(&u, src + k, sizeof u);
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        uint32_t quiet_nan = (u | 0x00400000u) & 0xffff0000u;
        u = ((u & 0x7fffffffu) > 0x7f800000u) ? quiet_nan : rounded;
        memcpy(dst + k, &u, sizeof u);
    }
}
