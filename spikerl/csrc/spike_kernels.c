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

#define CHUNK 16 /* output columns per packed weight slab: two AVX2 registers */

#if defined(__AVX2__)
static int32_t compact_lut[256][8]; /* for each 8-bit mask, the positions of its set bits, in order */
static int compact_lut_ready = 0;

static void compact_lut_init(void) {
    for (int mask = 0; mask < 256; mask++) {
        int m = 0;
        for (int j = 0; j < 8; j++)
            if (mask & (1 << j)) compact_lut[mask][m++] = j;
        for (; m < 8; m++) compact_lut[mask][m] = 0;
    }
    compact_lut_ready = 1;
}
#endif

/* Lists, for each row of a spike matrix x [R, K], the inputs equal to `value` (1: the active ones,
 * 0: the silent ones): idx[r*K + q], q < cnt[r], in increasing k. idx must have room for R*K + 8
 * entries. Returns the number listed, or -1 if some entry is neither 0 nor 1 (the caller then
 * multiplies densely). */
int64_t spike_index(const float* restrict x, int64_t R, int64_t K, int32_t* restrict idx, int32_t* restrict cnt,
                    int32_t value) {
    int64_t total = 0;
    int other = 0;
    const float want = value ? 1.0f : 0.0f;
#if defined(__AVX2__)
    if (!compact_lut_ready) compact_lut_init();
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), wanted = _mm256_set1_ps(want);
#endif
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * K;
        int32_t* ir = idx + r * K;
        int32_t m = 0, k = 0;
#if defined(__AVX2__)
        for (; k + 8 <= (int32_t)K; k += 8) {
            __m256 xv = _mm256_loadu_ps(xr + k);
            int zeros = _mm256_movemask_ps(_mm256_cmp_ps(xv, zero, _CMP_EQ_OQ));
            int ones = _mm256_movemask_ps(_mm256_cmp_ps(xv, one, _CMP_EQ_OQ));
            int hit = _mm256_movemask_ps(_mm256_cmp_ps(xv, wanted, _CMP_EQ_OQ));
            other |= ~(zeros | ones) & 0xff;
            __m256i pos = _mm256_loadu_si256((const __m256i*)compact_lut[hit]);
            _mm256_storeu_si256((__m256i*)(ir + m), _mm256_add_epi32(pos, _mm256_set1_epi32(k)));
            m += __builtin_popcount((unsigned)hit);
        }
#endif
        for (; k < (int32_t)K; k++) {
            ir[m] = k;
            m += xr[k] == want;
            other |= xr[k] != 0.0f && xr[k] != 1.0f;
        }
        cnt[r] = m;
        total += m;
    }
    return other ? -1 : total;
}

/* Repacks nn.Linear's weight w [N, K], times `scale` (1 or -1), into slabs
 * packed[c][k][j] = scale * w[c*CHUNK + j][k], zero past N, so the CHUNK weights that one input adds
 * to one slab of outputs are contiguous. Rows of w are read in order; each slab (K*CHUNK floats,
 * 16 KiB for K = 256) stays in L1 while it is filled. */
void pack_weight(const float* restrict w, float* restrict packed, int64_t K, int64_t N, float scale) {
    int64_t chunks = (N + CHUNK - 1) / CHUNK;
    for (int64_t c = 0; c < chunks; c++) {
        float* slab = packed + c * K * CHUNK;
        for (int64_t j = 0; j < CHUNK; j++) {
            int64_t n = c * CHUNK + j;
            if (n < N) {
                const float* row = w + n * K;
                for (int64_t k = 0; k < K; k++) slab[k * CHUNK + j] = scale * row[k];
            } else {
                for (int64_t k = 0; k < K; k++) slab[k * CHUNK + j] = 0.0f;
            }
        }
    }
}

static void store_chunk(float* dst, const float* src, int64_t width) {
    memcpy(dst, src, (size_t)width * sizeof(float));
}

#if defined(__AVX2__)
/* acc += the slab rows listed in ir[from .. to) (one row's tail in spike_matmul) */
static inline void add_listed(const float* slab, const int32_t* ir, int32_t from, int32_t to, __m256* lo, __m256* hi) {
    __m256 a = *lo, b = *hi;
    for (int32_t p = from; p < to; p++) {
        const float* w = slab + (int64_t)ir[p] * CHUNK;
        a = _mm256_add_ps(a, _mm256_loadu_ps(w));
        b = _mm256_add_ps(b, _mm256_loadu_ps(w + 8));
    }
    *lo = a;
    *hi = b;
}
#endif

/* out[r, n] = b[n] + sum over listed k of w[n, k], for the lists of spike_index.
 * A 0/1 input makes W·x a sum of weight columns: with spikes at density d this does d·K adds per
 * output instead of K multiply-adds. Four rows share each slab pass to keep eight independent
 * accumulator chains in flight. */
void spike_matmul(const int32_t* idx, const int32_t* cnt, const float* packed, const float* b, float* out,
                  int64_t R, int64_t K, int64_t N) {
    int64_t chunks = (N + CHUNK - 1) / CHUNK;
    for (int64_t c = 0; c < chunks; c++) {
        const float* slab = packed + c * K * CHUNK;
        int64_t n0 = c * CHUNK, width = N - n0 < CHUNK ? N - n0 : CHUNK;
        float bias[CHUNK] = {0};
        memcpy(bias, b + n0, (size_t)width * sizeof(float));
        int64_t r = 0;
#if defined(__AVX2__)
        __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
        float tmp[4][CHUNK];
        for (; r + 4 <= R; r += 4) {
            const int32_t *i0 = idx + r * K, *i1 = i0 + K, *i2 = i1 + K, *i3 = i2 + K;
            int32_t m0 = cnt[r], m1 = cnt[r + 1], m2 = cnt[r + 2], m3 = cnt[r + 3];
            int32_t both = m0 < m1 ? m0 : m1;
            both = both < m2 ? both : m2;
            both = both < m3 ? both : m3;
            __m256 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
            int32_t q = 0;
            for (; q < both; q++) {
                const float *w0 = slab + (int64_t)i0[q] * CHUNK, *w1 = slab + (int64_t)i1[q] * CHUNK;
                const float *w2 = slab + (int64_t)i2[q] * CHUNK, *w3 = slab + (int64_t)i3[q] * CHUNK;
                a00 = _mm256_add_ps(a00, _mm256_loadu_ps(w0));
                a01 = _mm256_add_ps(a01, _mm256_loadu_ps(w0 + 8));
                a10 = _mm256_add_ps(a10, _mm256_loadu_ps(w1));
                a11 = _mm256_add_ps(a11, _mm256_loadu_ps(w1 + 8));
                a20 = _mm256_add_ps(a20, _mm256_loadu_ps(w2));
                a21 = _mm256_add_ps(a21, _mm256_loadu_ps(w2 + 8));
                a30 = _mm256_add_ps(a30, _mm256_loadu_ps(w3));
                a31 = _mm256_add_ps(a31, _mm256_loadu_ps(w3 + 8));
            }
            add_listed(slab, i0, q, m0, &a00, &a01);  /* what is left of each row's list */
            add_listed(slab, i1, q, m1, &a10, &a11);
            add_listed(slab, i2, q, m2, &a20, &a21);
            add_listed(slab, i3, q, m3, &a30, &a31);
            if (width == CHUNK) {
                float* o0 = out + r * N + n0;
                _mm256_storeu_ps(o0, a00); _mm256_storeu_ps(o0 + 8, a01); o0 += N;
                _mm256_storeu_ps(o0, a10); _mm256_storeu_ps(o0 + 8, a11); o0 += N;
                _mm256_storeu_ps(o0, a20); _mm256_storeu_ps(o0 + 8, a21); o0 += N;
                _mm256_storeu_ps(o0, a30); _mm256_storeu_ps(o0 + 8, a31);
            } else {
                _mm256_storeu_ps(tmp[0], a00); _mm256_storeu_ps(tmp[0] + 8, a01);
                _mm256_storeu_ps(tmp[1], a10); _mm256_storeu_ps(tmp[1] + 8, a11);
                _mm256_storeu_ps(tmp[2], a20); _mm256_storeu_ps(tmp[2] + 8, a21);
                _mm256_storeu_ps(tmp[3], a30); _mm256_storeu_ps(tmp[3] + 8, a31);
                for (int s = 0; s < 4; s++) store_chunk(out + (r + s) * N + n0, tmp[s], width);
            }
        }
#endif
        for (; r < R; r++) {
            const int32_t* ir = idx + r * K;
            float acc[CHUNK];
            memcpy(acc, bias, sizeof(acc));
            for (int32_t q = 0; q < cnt[r]; q++) {
                const float* w = slab + (int64_t)ir[q] * CHUNK;
                for (int j = 0; j < CHUNK; j++) acc[j] += w[j];
            }
            store_chunk(out + r * N + n0, acc, width);
        }
    }
}

/* The weight gradient of spike_matmul: gw[n, k] = sum over rows r where k is listed of g[r, n], i.e.
 * gᵀ·x for a 0/1 x from its lists of active inputs (or gᵀ·(1 − x) from its silent ones). Each slab of CHUNK output columns is accumulated in
 * scratch [K][CHUNK] (16 KiB for K = 256: it stays in L1), then transposed into gw [N, K]. */
void spike_matmul_grad_weight(const int32_t* restrict idx, const int32_t* restrict cnt, const float* restrict g,
                              float* restrict gw, float* restrict scratch, int64_t R, int64_t K, int64_t N) {
    int64_t chunks = (N + CHUNK - 1) / CHUNK;
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n0 = c * CHUNK, width = N - n0 < CHUNK ? N - n0 : CHUNK;
        memset(scratch, 0, (size_t)(K * CHUNK) * sizeof(float));
        for (int64_t r = 0; r < R; r++) {
            const int32_t* ir = idx + r * K;
            float row[CHUNK] = {0};
            memcpy(row, g + r * N + n0, (size_t)width * sizeof(float));
            int32_t q = 0;
#if defined(__AVX2__)
            __m256 g0 = _mm256_loadu_ps(row), g1 = _mm256_loadu_ps(row + 8);
            for (; q < cnt[r]; q++) {
                float* s = scratch + (int64_t)ir[q] * CHUNK;
                _mm256_storeu_ps(s, _mm256_add_ps(_mm256_loadu_ps(s), g0));
                _mm256_storeu_ps(s + 8, _mm256_add_ps(_mm256_loadu_ps(s + 8), g1));
            }
#endif
            for (; q < cnt[r]; q++) {
                float* s = scratch + (int64_t)ir[q] * CHUNK;
                for (int j = 0; j < CHUNK; j++) s[j] += row[j];
            }
        }
        for (int64_t j = 0; j < width; j++)
            for (int64_t k = 0; k < K; k++) gw[(n0 + j) * K + k] = scratch[k * CHUNK + j];
    }
}

/* out = x·wᵀ + b for a few rows (acting at batch 1: T rows): x [R, K], nn.Linear's w [N, K].
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
                _mm256_storeu_ps(out + r * N + n, _mm256_add_ps(_mm256_loadu_ps(b + n), sums));
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
            out[r * N + n] = b[n] + sum;
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
 * Same operations in the same order as spikerl.lif._popsan_forward (a NaN membrane spikes in both). */
void popsan_lif_forward(const float* restrict i, float* restrict o, float* restrict v_rec, int64_t T, int64_t M) {
    float c[BLOCK], v[BLOCK], keep[BLOCK];
    for (int64_t e0 = 0; e0 < M; e0 += BLOCK) {
        int64_t n = M - e0 < BLOCK ? M - e0 : BLOCK, e;
        for (int64_t t = 0; t < T; t++) {
            const float* it = i + t * M + e0;
            float* ot = o + t * M + e0;
            e = 0;
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
