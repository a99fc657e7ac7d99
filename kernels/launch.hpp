// Host launchers of thinwire's CUDA kernels: the one header src/ includes to reach them.
//
// It carries no CUDA types: streams, events and cuBLAS handles are passed as void*
// (cudaStream_t, cudaEvent_t, cublasHandle_t). Every launcher is asynchronous on the given
// stream unless it says otherwise and reports a failure (a CUDA error at launch, bad
// arguments) as a non-empty string; the empty string means success. Nothing here throws.
//
// Two implementations link against this header:
//   kernels/*.cu          the CUDA kernels (thinwire_kernels), built whenever nvcc is found;
//   kernels/emulated/*    the same launchers as plain loops over host memory
//                         (thinwire_kernels_emulated), so that CPU tests run the device
//                         pipeline end to end; also linked, with devices disabled, into
//                         builds without CUDA (thinwire_kernels_none).
// The per-element arithmetic of both lives in __host__ __device__ (TW_HD) functions under
// src/, shared with the host backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "thinwire/dtype.hpp"

namespace thinwire::kernels {

// ---- devices, memory, streams (memory.cu; emulated/memory.cpp) ------------------------------

// Number of usable CUDA devices; 0 with the reason in *why when there are none (no driver,
// no device, built without CUDA). Never throws.
int device_count(std::string* why);
// True in the CPU emulation, where "device memory" is host memory.
bool emulated();
std::string set_device(int device);
std::string get_device(int* device);
// *device = the CUDA device that owns p, or -1 when p is host memory (pageable or pinned).
std::string pointer_device(const void* p, int* device);
std::string device_name(int device, std::string* name);

// Synchronous allocation. bytes == 0 allocates a minimal block (never a null pointer).
std::string device_alloc(void** p, std::size_t bytes);
std::string device_free(void* p);
std::string pinned_alloc(void** p, std::size_t bytes);  // page-locked host memory
std::string pinned_free(void* p);

std::string stream_create(void** stream);  // does not synchronise with the legacy stream
std::string stream_destroy(void* stream);
std::string stream_synchronize(void* stream);  // blocks the calling thread
// *done = whether all work enqueued on stream has completed (never blocks).
std::string stream_query(void* stream, bool* done);
std::string event_create(void** event);  // timing disabled
std::string event_destroy(void* event);
std::string event_record(void* event, void* stream);
std::string stream_wait_event(void* stream, void* event);

// Copies in any direction (host, pinned or device memory on either side).
std::string copy_async(void* dst, const void* src, std::size_t bytes, void* stream);
std::string zero_async(void* p, std::size_t bytes, void* stream);

// ---- decode status ---------------------------------------------------------------------------

// A decoder that finds a payload a correct encoder could not have written records why in a
// DecodeStatus in device memory (the first error wins) and leaves its outputs untouched.
// The host reads the slots once, at the end of a step, and raises thinwire::Error.
struct DecodeStatus {
  std::uint32_t code;       // DecodeError; 0: no error
  std::uint32_t from_rank;  // the block (= sending rank) that held the payload
  std::uint64_t detail;     // the field's value, or the element / position at fault
};

enum DecodeError : std::uint32_t {
  kDecodeOk = 0,
  kDecodeBadMagic = 1,    // magic or version
  kDecodeBadMethod = 2,   // method byte
  kDecodeBadN = 3,        // n differs from the layer's (chunk's)
  kDecodeBadParam = 4,    // k, bits or onebit's 1
  kDecodeBadAux = 5,      // qsgd bucket
  kDecodeBadBody = 6,     // body_bytes
  kDecodeBadIndex = 7,    // topk index >= n or not strictly increasing; detail = position
  kDecodeBadCode = 8,     // qsgd code out of range; detail = element
  kDecodePoisoned = 9,    // the server of this chunk rejected a payload; detail = its code
};

// The block a two-phase server sends instead of its payload when it rejected one of the
// payloads it received: every rank decodes the same gathered blocks, so every rank sees the
// rejection and raises the same error. Layout (little-endian): magic kPoisonMagic, code,
// from_rank (the worker whose payload was rejected), detail (u64): 20 bytes.
constexpr std::uint32_t kPoisonMagic = 0x58505754u;  // "TWPX"

// ---- element-wise (elementwise.cu; emulated/elementwise.cpp) --------------------------------
// The formulas are reducer/error_feedback_math.hpp's, shared with the host pipeline.

std::string ef_accumulate(float* e, const float* g, std::size_t n, void* stream);  // e += g
// EControl: x = eta e + g - h.
std::string econtrol_input(float* x, const float* e, const float* g, const float* h, float eta,
                           std::size_t n, void* stream);
// EControl after encode with r = x - decoded: h = eta e + g - r; e = (1 - eta) e + r.
std::string econtrol_after_encode(float* e, float* h, const float* g, const float* r, float eta,
                                  std::size_t n, void* stream);
// EControl with this rank's increment delta: h += delta; e = (1 - eta) e + (x - delta).
std::string econtrol_after_delta(float* e, float* h, const float* x, const float* delta, float eta,
                                 std::size_t n, void* stream);
// EControl's result: H += g; g = H.
std::string econtrol_finish(float* global, float* g, std::size_t n, void* stream);
std::string divide(float* out, const float* in, float divisor, std::size_t n,
                   void* stream);                                                  // out = in / d
std::string subtract(float* x, const float* y, std::size_t n, void* stream);  // x -= y
// *first = min(*first, index of the first NaN or infinity in x[0..n)); x holds `dtype`
// elements. The caller initialises *first (device memory) to a value >= n.
std::string first_non_finite(const void* x, DType dtype, std::size_t n, std::uint64_t* first,
                             void* stream);
// stats[0] += ||x - y||^2, stats[1] += ||x||^2 (double accumulation; device memory).
std::string residual_norms(const float* x, const float* y, std::size_t n, double* stats,
                           void* stream);

// ---- dtype conversion (convert.cu; emulated/convert.cpp) ------------------------------------
// f16/bf16 <-> f32 with common/half.hpp's rounding. `from16`/`to16` are uint16 bit patterns;
// bf16 selects bfloat16 instead of IEEE half.
std::string half_to_float(const std::uint16_t* from16, float* to, std::size_t n, bool bf16,
                          void* stream);
std::string float_to_half(const float* from, std::uint16_t* to16, std::size_t n, bool bf16,
                          void* stream);

// ---- top-k (topk.cu; emulated/topk.cpp) -------------------------------------------------------

// Payload: the wire header, k uint32 indices (ascending), k f32 values (wire_format.hpp).
struct TopkEncode {
  float* x = nullptr;        // the input
  const float* g = nullptr;  // optional: error feedback fused in, x = x + g (f32, x first)
                             // is formed and written back into x before selection
  float* residual = nullptr;  // optional: x with the selected entries zeroed (may alias x)
  std::size_t n = 0, k = 0;   // 1 <= k <= n < 2^32
  bool sampled = false;       // select=sampled: DGC's sampled threshold, trimmed/padded to k
  // sampled: the host's RandomStream::make(seed, layer, kPhaseSample, step, rank)
  std::uint64_t seed = 0, step = 0;
  std::uint32_t layer = 0, rank = 0;
  DType dtype = DType::f32;     // recorded in the header
  std::uint8_t* out = nullptr;  // kHeaderBytes + 8 k bytes
  double* stats = nullptr;      // optional: += {||x - C(x)||^2, ||x||^2}
  void* workspace = nullptr;    // topk_workspace_bytes(n, k) bytes of device memory
  std::size_t workspace_bytes = 0;
};
std::size_t topk_workspace_bytes(std::size_t n, std::size_t k);
std::string topk_encode(const TopkEncode& a, void* stream);

// The average of P top-k payloads of a layer of n elements (k entries each): payload r at
// in + r * stride, `size` bytes. Every payload is validated first; then out[0..n) = (the
// scatter-add of payloads 0, 1, .., P-1 in that order into zeros) / P, so every rank gets
// the same bits. On any invalid payload *status is set and out is not written.
std::string topk_decode_average(const std::uint8_t* in, std::size_t stride, std::size_t size,
                                int p, std::size_t n, std::size_t k, float* out,
                                DecodeStatus* status, void* stream);

// ---- two-phase codecs: onebit and qsgd (onebit.cu, qsgd.cu; emulated/two_phase.cpp) ---------

struct ChunkCodec {
  std::uint8_t method = 0;  // thinwire::Method: onebit or qsgd
  int bits = 0;             // qsgd
  std::size_t bucket = 0;   // qsgd
  bool contractive = false;  // qsgd under error feedback (qsgd_contraction)
};
// Header included: the same as the host codec's encoded_bytes(n).
std::size_t chunk_encoded_bytes(const ChunkCodec& c, std::size_t n);

// Encodes a layer of n elements as `parts` chunks, chunk j = [chunk_begin(n, j, parts),
// chunk_begin(n, j + 1, parts)) (algorithm/two_phase.hpp), into out + j * stride.
struct ChunkEncode {
  ChunkCodec codec;
  float* x = nullptr;
  const float* g = nullptr;    // optional: x = x + g first (error feedback fused in)
  float* residual = nullptr;   // optional: x - decoded (may alias x)
  std::size_t n = 0;
  int parts = 1;
  std::uint8_t* out = nullptr;
  std::size_t stride = 0;
  // qsgd's stream: RandomStream::make(seed, layer, phase, step, rank); element i of chunk j
  // draws uniform(offset + chunk_begin(n, j, parts) + i), as the host codec's EncodeKey.
  std::uint64_t seed = 0, step = 0, offset = 0;
  std::uint32_t layer = 0, rank = 0, phase = 0;
  DType dtype = DType::f32;
  double* stats = nullptr;  // optional: += {||x - C(x)||^2, ||x||^2}
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};
std::size_t chunk_workspace_bytes(const ChunkCodec& c, std::size_t n, int parts);
std::string chunk_encode(const ChunkEncode& a, void* stream);

// The server's step for one chunk of `len` elements: payloads r < p at in + r * stride
// (`size` bytes each) are validated and decoded, y = (their sum in rank order) / p, plus
// server_error when given; y is encoded into out (kPhaseServer stream of `rank` at `offset`)
// and server_error <- y - C(y). When a payload is invalid: *status is set, out becomes a
// poison block (kPoisonMagic) and server_error is left as it was.
struct ChunkServe {
  ChunkCodec codec;
  const std::uint8_t* in = nullptr;
  std::size_t stride = 0, size = 0;
  int p = 1;
  std::size_t len = 0;
  float* server_error = nullptr;  // optional
  float* scratch = nullptr;       // len floats
  std::uint8_t* out = nullptr;    // chunk_encoded_bytes(codec, len)
  std::uint64_t seed = 0, step = 0, offset = 0;
  std::uint32_t layer = 0, rank = 0;
  DType dtype = DType::f32;
  DecodeStatus* status = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};
std::string chunk_serve(const ChunkServe& a, void* stream);

// Decodes the `parts` chunks of a layer of n elements, chunk j at in + j * stride (`size`
// bytes), into out + chunk_begin(n, j, parts) (assign). All chunks are validated first (a
// poison block reports kDecodePoisoned with the server's code); on any error *status is set
// and out is not written.
std::string chunk_decode(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                         std::size_t size, std::size_t n, int parts, float* out,
                         DecodeStatus* status, void* stream);

// ---- PowerSGD (lowrank.cu; emulated/lowrank.cpp) ---------------------------------------------
// Row-major f32 matrices as in compress/low_rank.hpp: M (rows x cols), P (rows x r),
// Q (cols x r). Products run in cuBLAS (FP32, no TF32) on the handle's stream.

std::string blas_create(void** handle);
std::string blas_destroy(void* handle);
std::string lowrank_project(void* blas, const float* m, std::size_t rows, std::size_t cols,
                            const float* q, std::size_t r, float* p, void* stream);  // P = M Q
std::string lowrank_back_project(void* blas, const float* m, std::size_t rows, std::size_t cols,
                                 const float* p, std::size_t r, float* q,
                                 void* stream);  // Q = M^T P
std::string lowrank_reconstruct(void* blas, const float* p, const float* q, std::size_t rows,
                                std::size_t cols, std::size_t r, float* out,
                                void* stream);  // out = P Q^T
// The same three products over `count` matrices of one shape (cublasSgemmBatched): element b
// of each pointer array is the b-th matrix's buffer, e.g. P[b] = M[b] Q[b]. The pointer arrays
// themselves must be in DEVICE memory (cuBLAS reads them on the device; in the emulation,
// whose device memory is host memory, any host memory will do), stay unchanged until the
// stream has passed the call, and must not alias each other's outputs. The math mode and the
// row-major mapping are the single launchers'; in the emulation each element is the single
// launcher's result bit for bit, on a GPU cuBLAS may pick another kernel (another summation
// order) for the batched call, so the results agree to rounding. count == 0 does nothing.
std::string lowrank_project_batched(void* blas, const float* const* m, std::size_t rows,
                                    std::size_t cols, const float* const* q, std::size_t r,
                                    float* const* p, std::size_t count, void* stream);
std::string lowrank_back_project_batched(void* blas, const float* const* m, std::size_t rows,
                                         std::size_t cols, const float* const* p, std::size_t r,
                                         float* const* q, std::size_t count, void* stream);
std::string lowrank_reconstruct_batched(void* blas, const float* const* p, const float* const* q,
                                        std::size_t rows, std::size_t cols, std::size_t r,
                                        float* const* out, std::size_t count, void* stream);
// low_rank::orthonormalize on the device (Gram-Schmidt twice, double accumulation,
// epsilon-guarded): p's non-zero columns end orthonormal.
std::string lowrank_orthonormalize(float* p, std::size_t rows, std::size_t r, void* stream);
// low_rank::random_init and refresh_zero_columns: the same numbers as the host.
std::string lowrank_random_init(float* q, std::size_t cols, std::size_t r, std::uint64_t seed,
                                std::uint32_t layer, std::uint64_t salt, void* stream);
std::string lowrank_refresh_zero_columns(float* q, std::size_t cols, std::size_t r,
                                         std::uint64_t seed, std::uint32_t layer,
                                         std::uint64_t salt, void* stream);

}  // namespace thinwire::kernels
