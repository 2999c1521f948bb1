// gpicl's CUDA kernels: the GPU halves of the fused ops in gpicl-kernels.
//
// Compiled to PTX by build.rs (nvcc --ptx, CUDA_COMPUTE_CAP) when the
// `cuda` feature is on, loaded once per device by src/cuda.rs. Every
// kernel is f32 with f32 accumulation, and every reduction runs in a fixed
// order (warp shuffles, then per-row or per-chunk partials summed by
// `column_sum`), so results do not depend on scheduling: no atomics.
//
// Shapes follow the CPU kernels in src/host.rs, which these are tested
// against (tests/cuda_parity.rs, `cargo xtask gpu-check`).

#include <stdint.h>

#define WARP 32

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = WARP / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// ------------------------------------------------------------------ sums

// out[c] = sum over `rows_per_chunk` rows of x[r, c], for chunk blockIdx.y:
// out is [ceil(rows / rows_per_chunk), cols]. Called repeatedly until one
// row is left, so a column sum is a fixed tree of partial sums.
extern "C" __global__ void gpicl_column_sum(const float* x, float* out, int rows, int cols,
                                            int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(rows, r0 + rows_per_chunk);
    float acc = 0.0f;
    for (int r = r0; r < r1; ++r) acc += x[(size_t)r * cols + c];
    out[(size_t)blockIdx.y * cols + c] = acc;
}

// ------------------------------------------------------- bias, ReLU, GELU

// y = x + b (then max(., 0) when relu), b broadcast over rows of width n.
extern "C" __global__ void gpicl_bias_act_fwd(const float* x, const float* b, float* y,
                                              size_t len, int n, int relu) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float v = x[i] + b[i % n];
    y[i] = relu ? fmaxf(v, 0.0f) : v;
}

// dx = grad masked by y > 0 (relu) or grad itself.
extern "C" __global__ void gpicl_relu_bwd(const float* y, const float* grad, float* dx,
                                          size_t len, int relu) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    dx[i] = (!relu || y[i] > 0.0f) ? grad[i] : 0.0f;
}

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_TANH_COEF 0.044715f
#define FRAC_1_SQRT_2 0.7071067811865476f
#define FRAC_1_SQRT_2PI 0.3989422804014327f

extern "C" __global__ void gpicl_gelu_fwd(const float* x, float* y, size_t len, int tanh_approx) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float v = x[i];
    if (tanh_approx) {
        float u = SQRT_2_OVER_PI * (v + GELU_TANH_COEF * v * v * v);
        y[i] = 0.5f * v * (1.0f + tanhf(u));
    } else {
        y[i] = 0.5f * v * (1.0f + erff(v * FRAC_1_SQRT_2));
    }
}

extern "C" __global__ void gpicl_gelu_bwd(const float* x, const float* grad, float* dx, size_t len,
                                          int tanh_approx) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float v = x[i];
    float d;
    if (tanh_approx) {
        float u = SQRT_2_OVER_PI * (v + GELU_TANH_COEF * v * v * v);
        float th = tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_COEF * v * v);
        d = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * du;
    } else {
        float cdf = 0.5f * (1.0f + erff(v * FRAC_1_SQRT_2));
        float pdf = FRAC_1_SQRT_2PI * expf(-0.5f * v * v);
        d = cdf + v * pdf;
    }
    dx[i] = grad[i] * d;
}

// ------------------------------------------------------------- LayerNorm

// One warp per row of width d.
__device__ __forceinline__ void row_stats(const float* row, int d, float eps, float* mean,
                                          float* rstd) {
    int lane = threadIdx.x % WARP;
    float s = 0.0f;
    for (int j = lane; j < d; j += WARP) s += row[j];
    float m = warp_sum(s) / d;
    float v = 0.0f;
    for (int j = lane; j < d; j += WARP) {
        float c = row[j] - m;
        v += c * c;
    }
    *mean = m;
    *rstd = 1.0f / sqrtf(warp_sum(v) / d + eps);
}

extern "C" __global__ void gpicl_layer_norm_fwd(const float* x, const float* gain,
                                                const float* bias, float* y, int rows, int d,
                                                float eps) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * d;
    float mean, rstd;
    row_stats(xr, d, eps, &mean, &rstd);
    for (int j = threadIdx.x % WARP; j < d; j += WARP)
        y[(size_t)row * d + j] = (xr[j] - mean) * rstd * gain[j] + bias[j];
}

// dx per row; the per-row gain and bias gradient terms go to dgain_rows
// and dbias_rows ([rows, d]), summed afterwards by gpicl_column_sum.
extern "C" __global__ void gpicl_layer_norm_bwd(const float* x, const float* grad,
                                                const float* gain, float* dx, float* dgain_rows,
                                                float* dbias_rows, int rows, int d, float eps) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    int lane = threadIdx.x % WARP;
    size_t off = (size_t)row * d;
    const float* xr = x + off;
    const float* g = grad + off;
    float mean, rstd;
    row_stats(xr, d, eps, &mean, &rstd);
    float s1 = 0.0f, s2 = 0.0f;
    for (int j = lane; j < d; j += WARP) {
        float xhat = (xr[j] - mean) * rstd;
        float dxhat = g[j] * gain[j];
        dgain_rows[off + j] = g[j] * xhat;
        dbias_rows[off + j] = g[j];
        s1 += dxhat;
        s2 += dxhat * xhat;
    }
    float m1 = warp_sum(s1) / d;
    float m2 = warp_sum(s2) / d;
    for (int j = lane; j < d; j += WARP) {
        float xhat = (xr[j] - mean) * rstd;
        dx[off + j] = rstd * (g[j] * gain[j] - m1 - xhat * m2);
    }
}

// ------------------------------------------------------------- attention
//
// q, k, v, out: [batch, t, heads, key]. One warp per (batch, head, query i);
// `scratch` holds that row's t scores in shared memory (t floats per warp).

__device__ __forceinline__ size_t at(int b, int i, int h, int t, int heads, int key) {
    return (((size_t)b * t + i) * heads + h) * key;
}

// Fills p[0..=i] with softmax_j(scale · q_i·k_j) for one warp's row.
__device__ void causal_softmax_row(const float* q, const float* k, int b, int i, int h, int t,
                                   int heads, int key, float scale, float* p) {
    int lane = threadIdx.x % WARP;
    const float* qi = q + at(b, i, h, t, heads, key);
    float mx = -INFINITY;
    for (int j = 0; j <= i; ++j) {
        const float* kj = k + at(b, j, h, t, heads, key);
        float s = 0.0f;
        for (int d = lane; d < key; d += WARP) s += qi[d] * kj[d];
        s = warp_sum(s) * scale;
        if (lane == 0) p[j] = s;
        mx = fmaxf(mx, s);
    }
    __syncwarp();
    float z = 0.0f;
    for (int j = lane; j <= i; j += WARP) {
        float e = expf(p[j] - mx);
        p[j] = e;
        z += e;
    }
    z = warp_sum(z);
    __syncwarp();
    float inv = 1.0f / z;
    for (int j = lane; j <= i; j += WARP) p[j] *= inv;
    __syncwarp();
}

extern "C" __global__ void gpicl_attention_fwd(const float* q, const float* k, const float* v,
                                               float* out, int batch, int t, int heads, int key) {
    extern __shared__ float shared[];
    int warps = blockDim.x / WARP;
    int w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int row = blockIdx.x * warps + w;  // (b, h, i)
    if (row >= batch * heads * t) return;
    int i = row % t, h = (row / t) % heads, b = row / (t * heads);
    float* p = shared + (size_t)w * t;
    causal_softmax_row(q, k, b, i, h, t, heads, key, 1.0f / sqrtf((float)key), p);
    float* oi = out + at(b, i, h, t, heads, key);
    for (int d = lane; d < key; d += WARP) {
        float acc = 0.0f;
        for (int j = 0; j <= i; ++j) acc += p[j] * v[at(b, j, h, t, heads, key) + d];
        oi[d] = acc;
    }
}

// Backward, part one (one warp per query row i): dq_i, and the weights P
// and score gradients dS of the row (zero above the diagonal) into
// probs/dscores, [batch, heads, t, t].
extern "C" __global__ void gpicl_attention_bwd_rows(const float* q, const float* k, const float* v,
                                                    const float* dout, float* dq, float* probs,
                                                    float* dscores, int batch, int t, int heads,
                                                    int key) {
    extern __shared__ float shared[];
    int warps = blockDim.x / WARP;
    int w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int row = blockIdx.x * warps + w;
    if (row >= batch * heads * t) return;
    int i = row % t, h = (row / t) % heads, b = row / (t * heads);
    float scale = 1.0f / sqrtf((float)key);
    float* p = shared + (size_t)w * t;
    causal_softmax_row(q, k, b, i, h, t, heads, key, scale, p);
    const float* doi = dout + at(b, i, h, t, heads, key);
    size_t prow = (((size_t)b * heads + h) * t + i) * t;
    // dP_ij = dO_i · v_j, then dS_ij = P_ij (dP_ij − Σ_j' P_ij' dP_ij') · scale.
    float row_dot = 0.0f;
    for (int j = 0; j <= i; ++j) {
        const float* vj = v + at(b, j, h, t, heads, key);
        float s = 0.0f;
        for (int d = lane; d < key; d += WARP) s += doi[d] * vj[d];
        s = warp_sum(s);
        if (lane == 0) dscores[prow + j] = s;
        row_dot += p[j] * s;
    }
    __syncwarp();
    for (int j = lane; j < t; j += WARP) {
        if (j <= i) {
            float pij = p[j];
            probs[prow + j] = pij;
            dscores[prow + j] = pij * (dscores[prow + j] - row_dot) * scale;
        } else {
            probs[prow + j] = 0.0f;
            dscores[prow + j] = 0.0f;
        }
    }
    __syncwarp();
    float* dqi = dq + at(b, i, h, t, heads, key);
    for (int d = lane; d < key; d += WARP) {
        float acc = 0.0f;
        for (int j = 0; j <= i; ++j) acc += dscores[prow + j] * k[at(b, j, h, t, heads, key) + d];
        dqi[d] = acc;
    }
}

// Backward, part two (one thread per (b, h, key j, dim d)):
// dk_j = Σ_{i≥j} dS_ij q_i and dv_j = Σ_{i≥j} P_ij dO_i.
extern "C" __global__ void gpicl_attention_bwd_cols(const float* q, const float* dout,
                                                    const float* probs, const float* dscores,
                                                    float* dk, float* dv, int batch, int t,
                                                    int heads, int key) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)batch * heads * t * key;
    if (idx >= total) return;
    int d = idx % key;
    int j = (idx / key) % t;
    int h = (idx / ((size_t)key * t)) % heads;
    int b = idx / ((size_t)key * t * heads);
    size_t base = ((size_t)b * heads + h) * t * t;
    float ak = 0.0f, av = 0.0f;
    for (int i = j; i < t; ++i) {
        size_t pij = base + (size_t)i * t + j;
        size_t qi = at(b, i, h, t, heads, key) + d;
        ak += dscores[pij] * q[qi];
        av += probs[pij] * dout[qi];
    }
    dk[at(b, j, h, t, heads, key) + d] = ak;
    dv[at(b, j, h, t, heads, key) + d] = av;
}

// --------------------------------------------------------- cross-entropy

// One warp's row of logits: its max and log Σ exp(z − max).
__device__ __forceinline__ void row_max_lse(const float* z, int classes, float* mx, float* lse) {
    int lane = threadIdx.x % WARP;
    float m = -INFINITY;
    for (int c = lane; c < classes; c += WARP) m = fmaxf(m, z[c]);
    m = warp_max(m);
    float s = 0.0f;
    for (int c = lane; c < classes; c += WARP) s += expf(z[c] - m);
    *mx = m;
    *lse = logf(warp_sum(s));
}

// One warp per row: loss[r] = (logsumexp(z_r) − z_r[y_r]) · inv_rows, so
// that the column sum of `loss` is the mean.
extern "C" __global__ void gpicl_cross_entropy_fwd(const float* logits, const uint32_t* targets,
                                                   float* loss, int rows, int classes,
                                                   float inv_rows) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    int lane = threadIdx.x % WARP;
    const float* z = logits + (size_t)row * classes;
    float mx, lse;
    row_max_lse(z, classes, &mx, &lse);
    if (lane == 0) loss[row] = (mx + lse - z[targets[row]]) * inv_rows;
}

// dz = (softmax(z) − one_hot(y)) · scale.
extern "C" __global__ void gpicl_cross_entropy_bwd(const float* logits, const uint32_t* targets,
                                                   float* dlogits, int rows, int classes,
                                                   float scale) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    int lane = threadIdx.x % WARP;
    const float* z = logits + (size_t)row * classes;
    float* dz = dlogits + (size_t)row * classes;
    float mx, lse;
    row_max_lse(z, classes, &mx, &lse);
    uint32_t y = targets[row];
    for (int c = lane; c < classes; c += WARP)
        dz[c] = (expf(z[c] - mx - lse) - (c == (int)y ? 1.0f : 0.0f)) * scale;
}

// ------------------------------------------------------------- LSTM cell
//
// gates: [b, 4h] pre-activations (i, g, f, o); c_prev: [b, h];
// saved: [b, 6h] = h, c, i, g, f, o (activated), as the CPU recurrence.

extern "C" __global__ void gpicl_lstm_cell_fwd(const float* gates, const float* c_prev,
                                               float* saved, int batch, int h) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= batch * h) return;
    int b = idx / h, j = idx % h;
    const float* g = gates + (size_t)b * 4 * h;
    float i = sigmoidf(g[j]), gg = tanhf(g[h + j]), f = sigmoidf(g[2 * h + j] + 1.0f),
          o = sigmoidf(g[3 * h + j]);
    float c = f * c_prev[idx] + i * gg;
    float* s = saved + (size_t)b * 6 * h;
    s[j] = o * tanhf(c);
    s[h + j] = c;
    s[2 * h + j] = i;
    s[3 * h + j] = gg;
    s[4 * h + j] = f;
    s[5 * h + j] = o;
}

// From the gradient of everything saved: the gate pre-activation gradients
// [b, 4h] and the previous cell state's gradient [b, h].
extern "C" __global__ void gpicl_lstm_cell_bwd(const float* saved, const float* grad,
                                               const float* c_prev, float* dgates, float* dc_prev,
                                               int batch, int h) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= batch * h) return;
    int b = idx / h, j = idx % h;
    const float* s = saved + (size_t)b * 6 * h;
    const float* gr = grad + (size_t)b * 6 * h;
    float c = s[h + j], i = s[2 * h + j], g = s[3 * h + j], f = s[4 * h + j], o = s[5 * h + j];
    float dh = gr[j];
    float tc = tanhf(c);
    float d_o = dh * tc + gr[5 * h + j];
    float dc = dh * o * (1.0f - tc * tc) + gr[h + j];
    float d_i = dc * g + gr[2 * h + j];
    float d_g = dc * i + gr[3 * h + j];
    float d_f = dc * c_prev[idx] + gr[4 * h + j];
    dc_prev[idx] = dc * f;
    float* dg = dgates + (size_t)b * 4 * h;
    dg[j] = d_i * i * (1.0f - i);
    dg[h + j] = d_g * (1.0f - g * g);
    dg[2 * h + j] = d_f * f * (1.0f - f);
    dg[3 * h + j] = d_o * o * (1.0f - o);
}

// ------------------------------------------------- outer-product LSTM cell
//
// One block per (sequence, head), one thread per column l of the H×H cell.
// gates: [b, n·8H], per head k1 (3H), k2 (3H), q (H), o (H); c_prev and
// the new cell: [b, n, H, H]; saved: [b, 2nH + nH²] = h, read, C.
// X = (tanh(k1_X)·s) ⊗ tanh(k2_X) for X in i, g, f;
// C = σ(f + 1) ⊙ C_prev + σ(i) ⊙ g; read = Cᵀ q; h = σ(o) ⊙ tanh(read).

extern "C" __global__ void gpicl_outer_cell_fwd(const float* gates, const float* c_prev,
                                                const float* scale, float* saved, int n, int hs) {
    extern __shared__ float sh[];  // a: 3H, b: 3H
    int b = blockIdx.x / n, head = blockIdx.x % n, l = threadIdx.x;
    float s = scale[0];
    const float* g = gates + ((size_t)b * n + head) * 8 * hs;
    float* a = sh;
    float* bv = sh + 3 * hs;
    for (int k = l; k < 3 * hs; k += blockDim.x) {
        a[k] = tanhf(g[k]) * s;
        bv[k] = tanhf(g[3 * hs + k]);
    }
    __syncthreads();
    if (l >= hs) return;
    int width = n * hs;
    size_t sw = 2 * (size_t)width + (size_t)width * hs;
    float* out = saved + (size_t)b * sw;
    const float* cp = c_prev + ((size_t)b * n + head) * hs * hs;
    float* c = out + 2 * width + (size_t)head * hs * hs;
    float read = 0.0f;
    for (int j = 0; j < hs; ++j) {
        float v = sigmoidf(a[2 * hs + j] * bv[2 * hs + l] + 1.0f) * cp[j * hs + l] +
                  sigmoidf(a[j] * bv[l]) * (a[hs + j] * bv[hs + l]);
        c[j * hs + l] = v;
        read += v * g[6 * hs + j];
    }
    out[width + head * hs + l] = read;
    out[head * hs + l] = sigmoidf(g[7 * hs + l]) * tanhf(read);
}

// Backward of one (sequence, head): gate gradients [b, n·8H], the previous
// cell's gradient [b, n, H, H] and this block's share of the scale's
// gradient, dscale_parts[b·n + head].
extern "C" __global__ void gpicl_outer_cell_bwd(const float* gates, const float* c_prev,
                                                const float* scale, const float* saved,
                                                const float* grad, float* dgates, float* dc_prev,
                                                float* dscale_parts, int n, int hs) {
    extern __shared__ float sh[];  // a: 3H, bv: 3H, d_read: H, part: blockDim
    int b = blockIdx.x / n, head = blockIdx.x % n, tid = threadIdx.x;
    float s = scale[0];
    const float* g = gates + ((size_t)b * n + head) * 8 * hs;
    float* dg = dgates + ((size_t)b * n + head) * 8 * hs;
    float* a = sh;
    float* bv = sh + 3 * hs;
    float* d_read = sh + 6 * hs;
    float* part = sh + 7 * hs;
    int width = n * hs;
    size_t sw = 2 * (size_t)width + (size_t)width * hs;
    const float* here = saved + (size_t)b * sw;
    const float* gr = grad + (size_t)b * sw;
    const float* c = here + 2 * width + (size_t)head * hs * hs;
    const float* gc = gr + 2 * width + (size_t)head * hs * hs;
    const float* cp = c_prev + ((size_t)b * n + head) * hs * hs;
    float* dcp = dc_prev + ((size_t)b * n + head) * hs * hs;
    for (int k = tid; k < 3 * hs; k += blockDim.x) {
        a[k] = tanhf(g[k]) * s;
        bv[k] = tanhf(g[3 * hs + k]);
    }
    if (tid < hs) {
        int l = tid;
        float dh = gr[head * hs + l];
        float so = sigmoidf(g[7 * hs + l]);
        float tr = tanhf(here[width + head * hs + l]);
        dg[7 * hs + l] = dh * tr * so * (1.0f - so);
        d_read[l] = dh * so * (1.0f - tr * tr) + gr[width + head * hs + l];
    }
    __syncthreads();
    float dscale = 0.0f;
    if (tid < hs) {
        // Thread as row j: dq_j and the row gate gradients (d_a).
        int j = tid;
        float q = g[6 * hs + j];
        float dq = 0.0f, da0 = 0.0f, da1 = 0.0f, da2 = 0.0f;
        float a0 = a[j], a1 = a[hs + j], a2 = a[2 * hs + j];
        for (int l = 0; l < hs; ++l) {
            dq += c[j * hs + l] * d_read[l];
            float d = gc[j * hs + l] + q * d_read[l];
            float si = sigmoidf(a0 * bv[l]);
            float gv = a1 * bv[hs + l];
            float f = sigmoidf(a2 * bv[2 * hs + l] + 1.0f);
            da0 += d * gv * si * (1.0f - si) * bv[l];
            da1 += d * si * bv[hs + l];
            da2 += d * cp[j * hs + l] * f * (1.0f - f) * bv[2 * hs + l];
        }
        dg[6 * hs + j] = dq;
        // tanh(k1) recomputed rather than a / s: s may be 0.
        float ta0 = tanhf(g[j]), ta1 = tanhf(g[hs + j]), ta2 = tanhf(g[2 * hs + j]);
        dg[j] = da0 * s * (1.0f - ta0 * ta0);
        dg[hs + j] = da1 * s * (1.0f - ta1 * ta1);
        dg[2 * hs + j] = da2 * s * (1.0f - ta2 * ta2);
        dscale = da0 * ta0 + da1 * ta1 + da2 * ta2;

        // Thread as column l: the column gate gradients (d_b) and dC_prev.
        int l = tid;
        float db0 = 0.0f, db1 = 0.0f, db2 = 0.0f;
        for (int jj = 0; jj < hs; ++jj) {
            float d = gc[jj * hs + l] + g[6 * hs + jj] * d_read[l];
            float aa0 = a[jj], aa1 = a[hs + jj], aa2 = a[2 * hs + jj];
            float si = sigmoidf(aa0 * bv[l]);
            float gv = aa1 * bv[hs + l];
            float f = sigmoidf(aa2 * bv[2 * hs + l] + 1.0f);
            db0 += d * gv * si * (1.0f - si) * aa0;
            db1 += d * si * aa1;
            db2 += d * cp[jj * hs + l] * f * (1.0f - f) * aa2;
            dcp[jj * hs + l] = d * f;
        }
        float tb0 = bv[l], tb1 = bv[hs + l], tb2 = bv[2 * hs + l];
        dg[3 * hs + l] = db0 * (1.0f - tb0 * tb0);
        dg[4 * hs + l] = db1 * (1.0f - tb1 * tb1);
        dg[5 * hs + l] = db2 * (1.0f - tb2 * tb2);
    }
    part[tid] = dscale;
    __syncthreads();
    if (tid == 0) {
        float total = 0.0f;
        for (int k = 0; k < blockDim.x; ++k) total += part[k];
        dscale_parts[blockIdx.x] = total;
    }
}
