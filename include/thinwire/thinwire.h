/* thinwire C API: communication-compressed allreduce for data-parallel training.
 *
 * C99, no C++ types: for C programs, Fortran (through the *_fint entry point) and foreign
 * function interfaces such as Python's ctypes. It wraps the C++ API of <thinwire/thinwire.hpp>
 * one to one; see the README ("C API") for a complete program.
 *
 * Conventions
 * - Every function that can fail returns a tw_status. TW_OK is 0; the other codes map one to
 *   one onto thinwire::ErrorCode. No C++ exception ever crosses this boundary.
 * - After a failure, tw_last_error() returns the message of the last failed call made by the
 *   calling thread (thread-local); calls that succeed leave it unchanged.
 * - Functions marked "collective" must be called by every rank of the communicator in the same
 *   order, as with MPI collectives. Problems with one rank's arguments to a collective call
 *   (a null or wrong tensor, a wrong dtype) are reported on EVERY rank with the same status,
 *   so no rank is left waiting. A null handle is reported locally only.
 * - Handles are not thread-safe: use a communicator and its reducers from one thread at a time.
 * - Destroy every reducer before its communicator, and both before MPI_Finalize.
 */
#ifndef THINWIRE_THINWIRE_H
#define THINWIRE_THINWIRE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define TW_API
#else
#define TW_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes; the numbers equal thinwire::ErrorCode's. */
typedef enum {
  TW_OK = 0,
  TW_INVALID_ARGUMENT, /* bad input: spec string, layer shapes, tensors, buffer sizes, files */
  TW_MISMATCH,         /* ranks disagree (layers, specs, dtypes, step counters), or a state
                          file belongs to another layer set, spec, rank or world size */
  TW_TIMEOUT,          /* a collective did not finish within THINWIRE_TIMEOUT_S */
  TW_TRANSPORT_ERROR,  /* MPI failed, or the communicator is broken since an earlier failure */
  TW_UNSUPPORTED,      /* a valid request this build cannot serve (e.g. device tensors) */
  TW_INTERNAL          /* a bug in thinwire, or out of memory */
} tw_status;

/* Element type of the gradient tensors (all of one allreduce call share one type). */
typedef enum { TW_F32, TW_F16, TW_BF16 } tw_dtype;

typedef struct tw_comm tw_comm;
typedef struct tw_reducer tw_reducer;

/* ---- communicators ------------------------------------------------------------------- */

/* Collective over comm. thinwire duplicates comm, so its traffic never matches the
 * program's own messages. MPI must be initialised. */
TW_API tw_status tw_comm_from_mpi(MPI_Comm comm, tw_comm** out);
/* The same for a Fortran handle (MPI_Comm_c2f, mpi4py's comm.py2f()): for ctypes and Fortran. */
TW_API tw_status tw_comm_from_mpi_fint(int fortran_comm, tw_comm** out);
TW_API tw_status tw_comm_rank(const tw_comm* comm, int* rank);
TW_API tw_status tw_comm_size(const tw_comm* comm, int* size);
/* Accepts NULL. */
TW_API void tw_comm_destroy(tw_comm* comm);

/* ---- reducers ------------------------------------------------------------------------ */

/* Collective. Layer i is named names[i] and has ndims[i] dimensions shapes[i][0..ndims[i]-1]
 * (outermost first; PowerSGD views a layer as shape[0] rows by the product of the rest).
 * spec is a compression spec such as "topk:0.01,ef=ef" or "powersgd:4"; the environment
 * variable THINWIRE_COMPRESSION, when set, replaces it. Ranks whose layers or specs differ
 * all get TW_MISMATCH. */
TW_API tw_status tw_reducer_create(tw_comm* comm, int n_layers, const char* const* names,
                                   const int64_t* const* shapes, const int* ndims, const char* spec,
                                   tw_reducer** out);

/* Collective, in place: data[i] points to layer i's gradient (as many elements as the layer
 * has, of type dtype). device is -1 for host memory, else a CUDA device index, with
 * cuda_stream a cudaStream_t or NULL (the stream the gradients were produced on; the call
 * returns when the results are complete). Device pointers where no CUDA device is usable
 * return TW_UNSUPPORTED. On TW_OK every rank holds the same bits: the average
 * over ranks of what was transmitted, error feedback applied. */
TW_API tw_status tw_reducer_allreduce(tw_reducer* r, void* const* data, tw_dtype dtype, int device,
                                      void* cuda_stream);

/* Statistics since creation as a JSON object (bytes sent, bytes a dense allreduce would
 * send, seconds by phase, per-layer spec and route), NUL-terminated.
 * Too small a buffer (len < the size that tw_reducer_stats_json_size reports, NUL included)
 * returns TW_INVALID_ARGUMENT, stores "" when len > 0 and names the needed size in
 * tw_last_error(); buf may be NULL only with len 0. Statistics change only in
 * tw_reducer_allreduce, so a size queried before a call is the size the call needs. */
TW_API tw_status tw_reducer_stats_json(tw_reducer* r, char* buf, size_t len);
/* The buffer size tw_reducer_stats_json needs, NUL included. */
TW_API tw_status tw_reducer_stats_json_size(tw_reducer* r, size_t* len);

/* This rank's compression state (error memories, warm-start factors, step counter) to and
 * from a file. Not collective: every rank saves and loads its own file. load_state needs a
 * reducer created with the same layers, spec, number of ranks and rank (else TW_MISMATCH; an
 * `auto` reducer takes each layer's saved spec when it is one of its candidates); a
 * truncated or corrupt file gives TW_INVALID_ARGUMENT and leaves the reducer unchanged.
 * save_state writes PATH.tmp and renames it over PATH once complete: a failed write (a full
 * disk) gives TW_INVALID_ARGUMENT and leaves an earlier file at PATH as it was. */
TW_API tw_status tw_reducer_save_state(tw_reducer* r, const char* path);
TW_API tw_status tw_reducer_load_state(tw_reducer* r, const char* path);

/* Completed allreduce calls (restored by load_state). */
TW_API tw_status tw_reducer_step(const tw_reducer* r, uint64_t* step);
/* Accepts NULL. */
TW_API void tw_reducer_destroy(tw_reducer* r);

/* ---- errors and version -------------------------------------------------------------- */

/* The message of the calling thread's last failed call ("" if none); valid until this
 * thread's next failing call. */
TW_API const char* tw_last_error(void);
/* "ok", "invalid_argument", "mismatch", ... (static storage). */
TW_API const char* tw_status_string(tw_status status);
/* "0.1.0" (static storage). */
TW_API const char* tw_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* THINWIRE_THINWIRE_H */
