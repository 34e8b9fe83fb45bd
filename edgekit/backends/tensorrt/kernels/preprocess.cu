// edgekit's fused GPU preprocessing: uint8 HWC image -> resize -> centre crop -> normalise -> NCHW fp32/fp16.
//
// It reproduces PIL's Image.resize (what torchvision's eval transform runs on PIL images) bit for bit:
// PIL resamples 8-bit images in two separable passes with fixed-point coefficients, horizontal first into
// a uint8 intermediate (rounded and clipped), then vertical. The host computes those coefficients exactly
// as PIL does (edgekit/backends/tensorrt/kernels/cpu_reference.py, float64 then the same fixed-point conversion) for the output
// pixels inside the crop only, so this kernel knows nothing about resize sizes or crop offsets: output
// pixel (ox, oy) reads the source columns and rows its two table rows name. Each thread recomputes the
// horizontally resampled values of the rows in its own vertical window; sharing them through shared
// memory would save ~40 % of the multiply-adds at a 4x downscale; at 224x224 (~12 M multiply-adds for a
// 1080p frame) that is not worth the extra code until benchmarks/gpu/preprocess_bench.py says otherwise.
//
// Self-contained on purpose (no headers): NVRTC compiles it on a device without a CUDA toolkit.
// The struct layouts are mirrored by ctypes in edgekit/backends/tensorrt/kernels/launch.py; the static_asserts below pin
// them and tests/test_kernels.py checks the Python side against these same numbers.

#define EDGEKIT_MAX_IMAGES 32        // images per launch; launch.py splits larger batches
#define EDGEKIT_PRECISION_BITS 22    // PIL's PRECISION_BITS for 8-bit images: 32 - 8 - 2

struct EdgekitImage {
    unsigned long long src;     // device address of pixel (0, 0), byte 0
    long long pitch;            // bytes from one row to the next (>= width * stride)
    unsigned long long tables;  // device address of int32 tables: see reference.CropTables.packed()
    int stride;                 // bytes per pixel: 1 (grey), 3 (RGB/BGR) or 4 (RGBA/BGRA)
    int offset[3];              // byte offsets of R, G and B inside a pixel
    int kx;                     // row length of the horizontal weight table
    int ky;                     // row length of the vertical weight table
};

struct EdgekitParams {
    EdgekitImage images[EDGEKIT_MAX_IMAGES];
    unsigned long long out;  // device address of the whole NCHW tensor (batch index 0)
    float scale[3];          // out = v * scale[c] + shift[c], v the resampled uint8 value
    float shift[3];
    int crop;                // output height = width
    int count;               // images used in `images`
    int first;               // batch index in `out` of images[0]
    int reserved;            // keeps the size a multiple of 8 on every compiler
};

static_assert(sizeof(EdgekitImage) == 48, "EdgekitImage layout changed: update launch.py");
static_assert(sizeof(EdgekitParams) == 1584, "EdgekitParams layout changed: update launch.py");
#if !defined(__CUDACC_RTC__)  // NVRTC has no constant offsetof; nvcc checks the offsets, and the ABI is the same
static_assert(__builtin_offsetof(EdgekitImage, pitch) == 8, "EdgekitImage layout changed");
static_assert(__builtin_offsetof(EdgekitImage, tables) == 16, "EdgekitImage layout changed");
static_assert(__builtin_offsetof(EdgekitImage, stride) == 24, "EdgekitImage layout changed");
static_assert(__builtin_offsetof(EdgekitImage, offset) == 28, "EdgekitImage layout changed");
static_assert(__builtin_offsetof(EdgekitImage, kx) == 40, "EdgekitImage layout changed");
static_assert(__builtin_offsetof(EdgekitImage, ky) == 44, "EdgekitImage layout changed");
static_assert(__builtin_offsetof(EdgekitParams, out) == 1536, "EdgekitParams layout changed");
static_assert(__builtin_offsetof(EdgekitParams, scale) == 1544, "EdgekitParams layout changed");
static_assert(__builtin_offsetof(EdgekitParams, shift) == 1556, "EdgekitParams layout changed");
static_assert(__builtin_offsetof(EdgekitParams, crop) == 1568, "EdgekitParams layout changed");
static_assert(__builtin_offsetof(EdgekitParams, count) == 1572, "EdgekitParams layout changed");
static_assert(__builtin_offsetof(EdgekitParams, first) == 1576, "EdgekitParams layout changed");
#endif

// PIL's clip8: the accumulator shifted down to 8 bits, clamped to 0..255 (PIL uses a lookup table that
// covers every value its filters can produce; the clamp is the same function on that range).
__device__ __forceinline__ int edgekit_clip8(int acc) {
    const int v = acc >> EDGEKIT_PRECISION_BITS;
    return v < 0 ? 0 : (v > 255 ? 255 : v);
}

// v * scale + shift with two IEEE roundings and no FMA contraction, so that NumPy's float32
// `v * scale + shift` in reference.py is bit-identical.
__device__ __forceinline__ float edgekit_normalise(int v, float scale, float shift) {
    return __fadd_rn(__fmul_rn(static_cast<float>(v), scale), shift);
}

__device__ __forceinline__ void edgekit_store(float* out, long long index, float v) { out[index] = v; }

__device__ __forceinline__ void edgekit_store(unsigned short* out, long long index, float v) {
#if defined(EDGEKIT_HOST_EMULATION)  // tests/test_kernels.py also runs this file as C++ on the CPU
    out[index] = edgekit_host_f32_to_f16(v);
#else
    unsigned short bits;  // IEEE half, round to nearest even: what NumPy's astype(float16) does
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));
    out[index] = bits;
#endif
}

template <typename OutT>
__device__ __forceinline__ void edgekit_preprocess(const EdgekitParams& p) {
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    const int n = blockIdx.z;
    const int crop = p.crop;
    if (ox >= crop || oy >= crop || n >= p.count) {
        return;
    }
    const unsigned char* src = reinterpret_cast<const unsigned char*>(p.images[n].src);
    const long long pitch = p.images[n].pitch;
    const int* tables = reinterpret_cast<const int*>(p.images[n].tables);
    const int stride = p.images[n].stride;
    const int r = p.images[n].offset[0];
    const int g = p.images[n].offset[1];
    const int b = p.images[n].offset[2];
    const int kx = p.images[n].kx;
    const int ky = p.images[n].ky;

    // Table layout (int32): x bounds [crop][2], y bounds [crop][2], x weights [crop][kx], y weights [crop][ky].
    const int x0 = __ldg(tables + 2 * ox);
    const int xn = __ldg(tables + 2 * ox + 1);
    const int y0 = __ldg(tables + 2 * crop + 2 * oy);
    const int yn = __ldg(tables + 2 * crop + 2 * oy + 1);
    const int* wx = tables + 4 * crop + ox * kx;
    const int* wy = tables + 4 * crop + crop * kx + oy * ky;

    const int half = 1 << (EDGEKIT_PRECISION_BITS - 1);
    int acc_r = half, acc_g = half, acc_b = half;
    for (int j = 0; j < yn; ++j) {
        // Horizontal pass for source row y0 + j at this output column: PIL's uint8 intermediate.
        const unsigned char* px = src + static_cast<long long>(y0 + j) * pitch + static_cast<long long>(x0) * stride;
        int h_r = half, h_g = half, h_b = half;
        for (int i = 0; i < xn; ++i, px += stride) {
            const int w = __ldg(wx + i);
            h_r += static_cast<int>(__ldg(px + r)) * w;
            h_g += static_cast<int>(__ldg(px + g)) * w;
            h_b += static_cast<int>(__ldg(px + b)) * w;
        }
        const int w = __ldg(wy + j);
        acc_r += edgekit_clip8(h_r) * w;
        acc_g += edgekit_clip8(h_g) * w;
        acc_b += edgekit_clip8(h_b) * w;
    }

    const long long plane = static_cast<long long>(crop) * crop;
    const long long index = static_cast<long long>(p.first + n) * 3 * plane + static_cast<long long>(oy) * crop + ox;
    OutT* out = reinterpret_cast<OutT*>(p.out);
    edgekit_store(out, index, edgekit_normalise(edgekit_clip8(acc_r), p.scale[0], p.shift[0]));
    edgekit_store(out, index + plane, edgekit_normalise(edgekit_clip8(acc_g), p.scale[1], p.shift[1]));
    edgekit_store(out, index + 2 * plane, edgekit_normalise(edgekit_clip8(acc_b), p.scale[2], p.shift[2]));
}

// One thread per output pixel (all three channels); grid = (ceil(crop / 32), ceil(crop / 8), count).
extern "C" __global__ void __launch_bounds__(256) edgekit_preprocess_f32(const EdgekitParams p) {
    edgekit_preprocess<float>(p);
}

extern "C" __global__ void __launch_bounds__(256) edgekit_preprocess_f16(const EdgekitParams p) {
    edgekit_preprocess<unsigned short>(p);
}
