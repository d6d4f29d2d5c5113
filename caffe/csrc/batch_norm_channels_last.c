/* BatchNorm over a channels-last float tensor, seen as an (m x c) row-major matrix (rows: the
 * N*H*W positions, columns: the channels) whose rows lie ldx floats apart (ldx = c, or more for
 * the first c channels of a wider buffer: a DenseNet block's Concat, caffe/functional.py
 * concat_chain). Gradients and outputs are dense (m x c). Training forward and backward each
 * read the tensor the fewest times they can: the statistics in one pass, the normalisation
 * (with the ReLU that follows it in the nets, when asked) in one, the backward's two channel sums
 * in one, the input gradient in one. The normalisation is one fused multiply-add per value,
 * x a + b rounded once, as PyTorch's own kernels compute it; the backward masks the incoming
 * gradient by the ReLU itself, recomputing x a + b > 0 with that same fmaf (no other contraction:
 * -ffp-contract=off), so the ReLU costs no pass of its own in either direction. The small
 * per-channel formulas between the passes (bn_cl_coefficients, bn_cl_grad_coefficients) are here
 * too, so that a call from Python needs few PyTorch operations besides the passes.
 *
 * Threads: OpenMP, the runtime PyTorch itself uses (libgomp.so.1 is loaded by then, so this
 * library shares its pool and its thread count). Each thread sums its own rows into its own
 * double accumulators, allocated separately (no cache line is written by two threads), and the
 * threads' sums are added in a fixed order, so results do not depend on timing.
 *
 * Loaded by caffe/native.py; caffe/functional.py (_ChannelsLastBatchNorm) calls it. */
#include <math.h>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <stdint.h>
#include <stdlib.h>

#define BLOCK_ROWS 64 /* rows summed in float before they are added to the double sums */

static int threads_for(int64_t m, int64_t c, int threads) {
    int64_t work = m * c / 65536; /* small tensors: one thread */
    if (work < 1) return 1;
    return work < threads ? (int)work : threads;
}

/* The threads of a pass of channel sums, chosen by the rows alone (whole blocks of rows per
 * thread): each thread's share of the rows, and so every channel's sums, are then the same
 * whatever channels the pass covers, and the statistics of a few channels of a tensor equal,
 * bit for bit, those of the same channels summed with all of them (caffe/functional.py keeps a
 * DenseNet block's statistics per channel from one BatchNorm to the next). */
static int threads_for_rows(int64_t m, int threads) {
    int64_t blocks = m / BLOCK_ROWS;
    if (blocks < 1) return 1;
    return blocks < threads ? (int)blocks : threads;
}

/* The two per-channel sums a pass makes: of the statistics (STATS: d = x - centre, s1 += d,
 * s2 += d^2) or of the backward (GRAD: g = dy, masked by the ReLU when a is given, s1 += g,
 * s2 += g (x - centre)). */
enum sums_kind { STATS, GRAD };

struct sums_pass {
    enum sums_kind kind;
    const float *x, *dy;   /* dy: GRAD only */
    const float *centre;   /* STATS: the shift; GRAD: the mean */
    const float *a, *b;    /* GRAD: the ReLU's mask fma(x, a, b) > 0, or NULL */
    int64_t m, c, ldx;
};

#if defined(__AVX512F__)
/* Tensors of at most 16 channels (HoloNet's first blocks: 8 and 12) take one masked 512-bit
 * vector per row, the per-channel values held in registers. The loops over the channels below
 * leave such short rows to scalar code, whose block sums then wait on memory at every row:
 * several times slower than the memory traffic. Each lane does what the loops do for its
 * channel, the same operations in the same order (fmaf is _mm512_fmadd_ps, both rounded once),
 * so the values are the same bit for bit. */
#define NARROW 16

static __mmask16 narrow_mask(int64_t c) { return (__mmask16)((1u << c) - 1u); }

static __m512 narrow_load(__mmask16 k, const float *v) { return _mm512_maskz_loadu_ps(k, v); }

/* dy where fma(x, a, b) > 0, else 0: the ReLU's mask, as the loops compute it. */
static __m512 narrow_relu_masked(__mmask16 k, __m512 g, __m512 x, __m512 a, __m512 b) {
    __m512 y = _mm512_fmadd_ps(x, a, b);
    return _mm512_maskz_mov_ps(_mm512_mask_cmp_ps_mask(k, y, _mm512_setzero_ps(), _CMP_GT_OQ),
                               g);
}

static void add_rows_narrow(const struct sums_pass *p, int64_t r0, int64_t r1, float *bs1,
                            float *bs2) {
    const __mmask16 k = narrow_mask(p->c);
    const __m512 centre = narrow_load(k, p->centre);
    __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps();
    if (p->kind == STATS) {
        for (int64_t r = r0; r < r1; r++) {
            __m512 d = _mm512_sub_ps(narrow_load(k, p->x + r * p->ldx), centre);
            s1 = _mm512_add_ps(s1, d);
            s2 = _mm512_add_ps(s2, _mm512_mul_ps(d, d));
        }
    } else {
        const __m512 a = narrow_load(k, p->a ? p->a : p->centre);
        const __m512 b = narrow_load(k, p->b ? p->b : p->centre);
        for (int64_t r = r0; r < r1; r++) {
            __m512 x = narrow_load(k, p->x + r * p->ldx);
            __m512 g = narrow_load(k, p->dy + r * p->c);
            if (p->a) g = narrow_relu_masked(k, g, x, a, b);
            s1 = _mm512_add_ps(s1, g);
            s2 = _mm512_add_ps(s2, _mm512_mul_ps(g, _mm512_sub_ps(x, centre)));
        }
    }
    _mm512_mask_storeu_ps(bs1, k, _mm512_add_ps(narrow_load(k, bs1), s1));
    _mm512_mask_storeu_ps(bs2, k, _mm512_add_ps(narrow_load(k, bs2), s2));
}
#endif

/* Rows [r0, r1) added into the float block sums bs1, bs2 (the kind's loop chosen once per block,
 * so that each loop vectorises over the channels; restrict: the sums alias no input, which the
 * compiler otherwise checks for, or gives up on, where this is not inlined). */
static void add_rows(const struct sums_pass *p, int64_t r0, int64_t r1, float *restrict bs1,
                     float *restrict bs2) {
    const int64_t c = p->c;
    const float *centre = p->centre;
    for (int64_t r = r0; r < r1; r++) {
        const float *in = p->x + r * p->ldx;
        if (p->kind == STATS) {
            for (int64_t j = 0; j < c; j++) {
                float d = in[j] - centre[j];
                bs1[j] += d;
                bs2[j] += d * d;
            }
        } else if (p->a) {
            const float *g = p->dy + r * c, *a = p->a, *b = p->b;
            for (int64_t j = 0; j < c; j++) {
                float gj = fmaf(in[j], a[j], b[j]) > 0.0f ? g[j] : 0.0f;
                bs1[j] += gj;
                bs2[j] += gj * (in[j] - centre[j]);
            }
        } else {
            const float *g = p->dy + r * c;
            for (int64_t j = 0; j < c; j++) {
                bs1[j] += g[j];
                bs2[j] += g[j] * (in[j] - centre[j]);
            }
        }
    }
}

/* The pass over all rows: each thread sums its own rows, BLOCK_ROWS at a time in float, into
 * its own double sums; the threads' sums are then added in thread order into s1 and s2. */
static void two_sums(const struct sums_pass *p, int threads, double *s1, double *s2) {
    const int64_t m = p->m, c = p->c;
    int nt = threads_for_rows(m, threads);
    double *part = calloc((size_t)nt * 2 * (size_t)c + 16, sizeof(double));
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        double *d1 = aligned_alloc(64, ((size_t)c * 2 * sizeof(double) + 63) / 64 * 64);
        float *bs1 = aligned_alloc(64, ((size_t)c * 2 * sizeof(float) + 63) / 64 * 64);
        double *d2 = d1 + c;
        float *bs2 = bs1 + c;
        for (int64_t j = 0; j < c; j++) d1[j] = d2[j] = 0.0;
        int64_t begin = m * t / n, end = m * (t + 1) / n;
        for (int64_t r0 = begin; r0 < end; r0 += BLOCK_ROWS) {
            int64_t r1 = r0 + BLOCK_ROWS < end ? r0 + BLOCK_ROWS : end;
            for (int64_t j = 0; j < c; j++) bs1[j] = bs2[j] = 0.0f;
#if defined(__AVX512F__)
            if (c <= NARROW)
                add_rows_narrow(p, r0, r1, bs1, bs2);
            else
#endif
                add_rows(p, r0, r1, bs1, bs2);
            for (int64_t j = 0; j < c; j++) {
                d1[j] += bs1[j];
                d2[j] += bs2[j];
            }
        }
        for (int64_t j = 0; j < c; j++) {
            part[(size_t)t * 2 * c + j] = d1[j];
            part[(size_t)t * 2 * c + c + j] = d2[j];
        }
        free(d1);
        free(bs1);
    }
    for (int64_t j = 0; j < c; j++) {
        double u = 0.0, v = 0.0;
        for (int t = 0; t < nt; t++) {
            u += part[(size_t)t * 2 * c + j];
            v += part[(size_t)t * 2 * c + c + j];
        }
        s1[j] = u;
        s2[j] = v;
    }
    free(part);
}

/* Training statistics: mean[c] and biased var[c] = E((x - mean)^2), from the sums of x - shift
 * and (x - shift)^2, shift = the channel's first value (a shift near the mean keeps the sum of
 * squares from cancelling); summed in double, rounded to float once at the end. */
void bn_cl_stats(const float *x, int64_t m, int64_t c, int64_t ldx, int threads, float *mean,
                 float *var) {
    float *shift = malloc((size_t)c * sizeof(float));
    for (int64_t j = 0; j < c; j++) shift[j] = m ? x[j] : 0.0f;
    double *sums = malloc((size_t)c * 2 * sizeof(double));
    struct sums_pass p = {STATS, x, NULL, shift, NULL, NULL, m, c, ldx};
    two_sums(&p, threads, sums, sums + c);
    for (int64_t j = 0; j < c; j++) {
        double d = sums[j] / (double)m; /* mean - shift */
        double v = sums[c + j] / (double)m - d * d;
        mean[j] = (float)(d + (double)shift[j]);
        var[j] = v < 0.0 ? 0.0f : (float)v;
    }
    free(sums);
    free(shift);
}

/* The per-channel coefficients of the normalisation, written to coef (5 rows of c floats:
 * mean, var, invstd, a, b) from the statistics mean[c], var[c] (the batch's or the running
 * ones): invstd = 1 / sqrt(var + eps), a = w invstd, b = bias - mean a (weight, bias: NULL when
 * absent, as 1 and 0), each operation rounded to float as PyTorch's elementwise kernels round
 * it. bn_cl_affine then computes fma(x, a, b). */
void bn_cl_coefficients(const float *mean, const float *var, const float *weight,
                        const float *bias, float eps, int64_t c, float *coef) {
    float *m = coef, *v = coef + c, *invstd = coef + 2 * c, *a = coef + 3 * c, *b = coef + 4 * c;
    for (int64_t j = 0; j < c; j++) {
        float mj = mean[j], vj = var[j];
        float s = 1.0f / sqrtf(vj + eps);
        float aj = weight ? s * weight[j] : s;
        m[j] = mj;
        v[j] = vj;
        invstd[j] = s;
        a[j] = aj;
        b[j] = bias ? bias[j] - mj * aj : -mj * aj;
    }
}

/* The backward's channel sums in one pass: sums[c] = sum dy, sums[c + j] = sum dy (x - mean),
 * in double, rounded to float at the end. With a and b (a ReLU after the normalisation), dy
 * counts only where fma(x, a, b) > 0, the value bn_cl_affine's forward computed. */
void bn_cl_grad_sums(const float *dy, const float *x, int64_t m, int64_t c, int64_t ldx,
                     const float *mean, const float *a, const float *b, int threads,
                     float *sums) {
    double *d = malloc((size_t)c * 2 * sizeof(double));
    struct sums_pass p = {GRAD, x, dy, mean, a, b, m, c, ldx};
    two_sums(&p, threads, d, d + c);
    for (int64_t j = 0; j < 2 * c; j++) sums[j] = (float)d[j];
    free(d);
}

/* The backward's per-channel coefficients from coef (bn_cl_coefficients' rows) and the sums of
 * bn_cl_grad_sums over count rows, grads' first two rows (sum_dy, dot); written to grads' rows
 * 2-5: k, p, q of the input gradient dy k + x p + q and dw = dot invstd. Training (batch
 * statistics): with s = w invstd, p = -(invstd^2 dot / count) s and q = -(sum_dy / count) s -
 * p mean, the formula of PyTorch's native_batch_norm_backward; fixed statistics: k = s, p = q =
 * 0. Each operation rounded to float, in that order. */
void bn_cl_grad_coefficients(const float *coef, const float *weight, int64_t count, int training,
                             int64_t c, float *grads) {
    const float *mean = coef, *invstd = coef + 2 * c;
    const float *sum_dy = grads, *dot = grads + c;
    float *k = grads + 2 * c, *p = grads + 3 * c, *q = grads + 4 * c, *dw = grads + 5 * c;
    const float n = (float)count;
    for (int64_t j = 0; j < c; j++) {
        float s = weight ? invstd[j] * weight[j] : invstd[j];
        k[j] = s;
        if (training) {
            float pj = -(invstd[j] * invstd[j] * dot[j] / n) * s;
            p[j] = pj;
            q[j] = -(sum_dy[j] / n) * s - pj * mean[j];
        } else {
            p[j] = 0.0f;
            q[j] = 0.0f;
        }
        dw[j] = dot[j] * invstd[j];
    }
}

/* Training input gradient: dx = dy * k + x * p + q per channel, dy masked as in
 * bn_cl_grad_sums when a and b are given; dx's rows lie lddx floats apart. With accumulate, the
 * value is added to what dx holds (dx += ..., the same sum autograd would make of the two
 * gradients): a DenseNet block's gradient buffer (caffe/functional.py ConcatChain). */
void bn_cl_grad_input(const float *dy, const float *x, int64_t m, int64_t c, int64_t ldx,
                      const float *k, const float *p, const float *q, const float *a,
                      const float *b, int threads, float *dx, int64_t lddx, int accumulate) {
    int nt = threads_for(m, c, threads);
#if defined(__AVX512F__)
    if (c <= NARROW) {
        const __mmask16 km = narrow_mask(c);
        const __m512 vk = narrow_load(km, k), vp = narrow_load(km, p), vq = narrow_load(km, q);
        const __m512 va = narrow_load(km, a ? a : k), vb = narrow_load(km, b ? b : k);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t r = 0; r < m; r++) {
            __m512 xr = narrow_load(km, x + r * ldx), g = narrow_load(km, dy + r * c);
            if (a) g = narrow_relu_masked(km, g, xr, va, vb);
            __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(g, vk), _mm512_mul_ps(xr, vp)),
                                     vq);
            if (accumulate) v = _mm512_add_ps(narrow_load(km, dx + r * lddx), v);
            _mm512_mask_storeu_ps(dx + r * lddx, km, v);
        }
        return;
    }
#endif
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        const float *g = dy + r * c, *in = x + r * ldx;
        float *out = dx + r * lddx;
        if (a && accumulate) {
            for (int64_t j = 0; j < c; j++) {
                float gj = fmaf(in[j], a[j], b[j]) > 0.0f ? g[j] : 0.0f;
                out[j] += gj * k[j] + in[j] * p[j] + q[j];
            }
        } else if (a) {
            for (int64_t j = 0; j < c; j++) {
                float gj = fmaf(in[j], a[j], b[j]) > 0.0f ? g[j] : 0.0f;
                out[j] = gj * k[j] + in[j] * p[j] + q[j];
            }
        } else if (accumulate) {
            for (int64_t j = 0; j < c; j++) out[j] += g[j] * k[j] + in[j] * p[j] + q[j];
        } else {
            for (int64_t j = 0; j < c; j++) out[j] = g[j] * k[j] + in[j] * p[j] + q[j];
        }
    }
}

/* The normalisation y = fma(x, a, b) per channel (a = w invstd, b = bias - mean a), and with
 * relu max(y, 0) (NaN kept, as torch.relu). y may be x (when ldx = c). */
void bn_cl_affine(const float *x, int64_t m, int64_t c, int64_t ldx, const float *a,
                  const float *b, int relu, int threads, float *y) {
    int nt = threads_for(m, c, threads);
#if defined(__AVX512F__)
    if (c <= NARROW) {
        const __mmask16 k = narrow_mask(c);
        const __m512 va = narrow_load(k, a), vb = narrow_load(k, b), zero = _mm512_setzero_ps();
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t r = 0; r < m; r++) {
            __m512 v = _mm512_fmadd_ps(narrow_load(k, x + r * ldx), va, vb);
            /* max(0, v) returns v where v is NaN or -0, as the loop's v < 0 ? 0 : v */
            _mm512_mask_storeu_ps(y + r * c, k, relu ? _mm512_max_ps(zero, v) : v);
        }
        return;
    }
#endif
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        const float *in = x + r * ldx;
        float *out = y + r * c;
        if (relu) {
            for (int64_t j = 0; j < c; j++) {
                float v = fmaf(in[j], a[j], b[j]);
                out[j] = v < 0.0f ? 0.0f : v;
            }
        } else {
            for (int64_t j = 0; j < c; j++) out[j] = fmaf(in[j], a[j], b[j]);
        }
    }
}
