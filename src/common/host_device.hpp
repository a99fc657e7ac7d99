// TW_HD marks per-element functions shared by the host backend and the CUDA kernels, so
// that CPU tests cover the arithmetic the kernels run.
#pragma once

#if defined(__CUDACC__)
#define TW_HD __host__ __device__ __forceinline__
#else
#define TW_HD inline
#endif
