/* MAX pooling of a channels-last float tensor without indices (a forward that records nothing
 * for a backward: the inference mode, pycaffe's forward of a TEST net), windows clipped to the
 * input as PyTorch's ceil-mode kernel clips them. Each pooled position takes its window's first
 * value and then every later one that is larger or NaN, in the window's row-major order: PyTorch's
 * rule (NaN propagates), so the values equal its kernel's. That kernel records the index of every
 * maximum and, with few channels, spends most of its time per position rather than per value
 * (HoloNet's first pooling at batch 1: 16 channels); here the channel loop is the inner one and
 * vectorises.
 *
 * Threads: OpenMP on PyTorch's pool (libgomp is loaded by then), the pooled rows split between
 * them; small maps take one. Loaded by caffe/native.py. */
#include <omp.h>
#include <stdint.h>

void maxpool_cl_forward(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh,
                        int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                        int64_t pw, int threads, float *y) {
    int64_t work = n * oh * ow * c * kh * kw / 65536;
    int nt = work < 1 ? 1 : (work < threads ? (int)work : threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t row = 0; row < n * oh; row++) {
        int64_t b = row / oh, oy = row % oh;
        int64_t y0 = oy * sh - ph, y1 = y0 + kh < h ? y0 + kh : h;
        if (y0 < 0) y0 = 0;
        for (int64_t ox = 0; ox < ow; ox++) {
            int64_t x0 = ox * sw - pw, x1 = x0 + kw < w ? x0 + kw : w;
            if (x0 < 0) x0 = 0;
            float *out = y + (row * ow + ox) * c;
            const float *first = x + ((b * h + y0) * w + x0) * c;
            for (int64_t j = 0; j < c; j++) out[j] = first[j];
            for (int64_t yy = y0; yy < y1; yy++) {
                for (int64_t xx = (yy == y0 ? x0 + 1 : x0); xx < x1; xx++) {
                    const float *in = x + ((b * h + yy) * w + xx) * c;
                    for (int64_t j = 0; j < c; j++) {
                        float v = in[j], m = out[j];
                        out[j] = ((v > m) | (v != v)) ? v : m;
                    }
                }
            }
        }
    }
}
