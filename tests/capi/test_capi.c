/* The C API under mpiexec -n 2 (or more), compiled as C99 with -pedantic: results identical on
 * every rank, the error statuses of bad specs, mismatched ranks, bad sizes, null and device
 * pointers and small buffers, and a save/load round trip that continues bit for bit.
 *
 * usage: test_capi SCRATCH_DIR      (state files go there)
 * Prints PASS on rank 0 when every check held on every rank. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <thinwire/thinwire.h>

enum { N_LAYERS = 3, MAX_NUMEL = 64 * 48 };

static int rank, size, failures;
static const char* scratch = ".";

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "test_capi: rank %d: line %d: FAILED: ", rank, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                             \
      fprintf(stderr, " (last error: %s)\n", tw_last_error());                  \
      ++failures;                                                               \
    }                                                                           \
  } while (0)

#define CHECK_STATUS(call, expected)                                                        \
  do {                                                                                      \
    tw_status got_ = (call);                                                                \
    CHECK(got_ == (expected), "%s returned %s, expected %s", #call, tw_status_string(got_), \
          tw_status_string(expected));                                                      \
  } while (0)

/* ---- model ----------------------------------------------------------------------------- */

static const char* const names[N_LAYERS] = {"w1", "b1", "w2"};
static const int64_t shape_w1[] = {64, 48}, shape_b1[] = {48}, shape_w2[] = {40, 30};
static const int64_t* const shapes[N_LAYERS] = {shape_w1, shape_b1, shape_w2};
static const int ndims[N_LAYERS] = {2, 1, 2};
static const size_t numel[N_LAYERS] = {64 * 48, 48, 40 * 30};

/* A deterministic value in [-1, 1) for (rank, step, layer, index). */
static float value(int r, int step, int layer, size_t i) {
  uint64_t x = ((uint64_t)r << 56) ^ ((uint64_t)step << 40) ^ ((uint64_t)layer << 32) ^ i;
  x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ull;
  x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44dull;
  x ^= x >> 33;
  return (float)((double)(x >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

typedef struct {
  float layer[N_LAYERS][MAX_NUMEL];
} grads_t;

static void fill(grads_t* g, int r, int step) {
  int l;
  size_t i;
  for (l = 0; l < N_LAYERS; ++l)
    for (i = 0; i < numel[l]; ++i) g->layer[l][i] = value(r, step, l, i);
}

static tw_status run_step(tw_reducer* red, grads_t* g) {
  void* data[N_LAYERS];
  int l;
  for (l = 0; l < N_LAYERS; ++l) data[l] = g->layer[l];
  return tw_reducer_allreduce(red, data, TW_F32, -1, NULL);
}

/* Every rank holds rank 0's bits. */
static int same_on_all_ranks(const void* p, size_t bytes) {
  unsigned char* root = malloc(bytes);
  int same = 0, all_same = 0;
  memcpy(root, p, bytes);
  MPI_Bcast(root, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
  same = memcmp(root, p, bytes) == 0;
  free(root);
  MPI_Allreduce(&same, &all_same, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  return all_same;
}

static tw_reducer* create(tw_comm* comm, const char* spec) {
  tw_reducer* red = NULL;
  CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, shapes, ndims, spec, &red), TW_OK);
  return red;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_results_identical(tw_comm* comm) {
  static const char* const specs[] = {"none",   "topk:0.05",  "onebit",
                                      "qsgd:4", "powersgd:2", "topk:0.1,ef=econtrol,min_numel=0"};
  static grads_t g;
  size_t s;
  int step, l;
  for (s = 0; s < sizeof specs / sizeof specs[0]; ++s) {
    tw_reducer* red = create(comm, specs[s]);
    uint64_t steps = 0;
    if (!red) continue;
    for (step = 0; step < 4; ++step) {
      fill(&g, rank, step);
      CHECK_STATUS(run_step(red, &g), TW_OK);
      for (l = 0; l < N_LAYERS; ++l)
        CHECK(same_on_all_ranks(g.layer[l], numel[l] * sizeof(float)),
              "spec %s step %d layer %s differs between ranks", specs[s], step, names[l]);
      if (s == 0) { /* "none" is the exact average, up to rounding */
        size_t i;
        double worst = 0.0;
        for (l = 0; l < N_LAYERS; ++l)
          for (i = 0; i < numel[l]; ++i) {
            double mean = 0.0, d;
            int r;
            for (r = 0; r < size; ++r) mean += value(r, step, l, i);
            d = mean / size - g.layer[l][i];
            if (d < 0) d = -d;
            if (d > worst) worst = d;
          }
        CHECK(worst < 1e-6, "spec none: result differs from the average by %g", worst);
      }
    }
    CHECK_STATUS(tw_reducer_step(red, &steps), TW_OK);
    CHECK(steps == 4, "spec %s: step counter %llu, expected 4", specs[s],
          (unsigned long long)steps);
    tw_reducer_destroy(red);
  }
}

/* f16 and bf16 tensors: identical on every rank. */
static void test_half_types(tw_comm* comm) {
  static uint16_t h[N_LAYERS][MAX_NUMEL];
  const tw_dtype types[2] = {TW_F16, TW_BF16};
  int t, l;
  size_t i;
  for (t = 0; t < 2; ++t) {
    tw_reducer* red = create(comm, "topk:0.1");
    void* data[N_LAYERS];
    if (!red) continue;
    for (l = 0; l < N_LAYERS; ++l) {
      /* small finite half/bfloat16 values: a random mantissa, exponent 2^-1 or 2^-2 */
      for (i = 0; i < numel[l]; ++i) {
        float v = value(rank, t, l, i);
        uint16_t mant = (uint16_t)((v + 1.0f) * 511.0f) & 0x3ff;
        h[l][i] = t == 0 ? (uint16_t)(0x3400 | mant) : (uint16_t)(0x3e80 | (mant & 0x7f));
        if (v < 0) h[l][i] |= 0x8000;
      }
      data[l] = h[l];
    }
    CHECK_STATUS(tw_reducer_allreduce(red, data, types[t], -1, NULL), TW_OK);
    for (l = 0; l < N_LAYERS; ++l)
      CHECK(same_on_all_ranks(h[l], numel[l] * 2), "dtype %d layer %s differs between ranks", t,
            names[l]);
    tw_reducer_destroy(red);
  }
}

static void test_bad_arguments(tw_comm* comm) {
  tw_reducer* red = (tw_reducer*)&red; /* must be reset to NULL on failure */
  static const int64_t negative[] = {-3, 4};
  const int64_t* bad_shapes[N_LAYERS] = {negative, shape_b1, shape_w2};
  static grads_t g;
  void* data[N_LAYERS];
  char small[8];
  size_t need = 0;
  int l;

  /* bad specs */
  CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, shapes, ndims, "topk:2", &red),
               TW_INVALID_ARGUMENT);
  CHECK(red == NULL, "a failed create left *out non-NULL");
  CHECK(strstr(tw_last_error(), "topk") != NULL, "the message does not name the bad token: %s",
        tw_last_error());
  CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, shapes, ndims, "zip:3", &red),
               TW_INVALID_ARGUMENT);
  CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, shapes, ndims, NULL, &red),
               TW_INVALID_ARGUMENT);

  /* bad sizes */
  CHECK_STATUS(tw_reducer_create(comm, -1, names, shapes, ndims, "none", &red),
               TW_INVALID_ARGUMENT);
  CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, bad_shapes, ndims, "none", &red),
               TW_INVALID_ARGUMENT);
  CHECK(strstr(tw_last_error(), "w1") != NULL, "the message does not name the layer: %s",
        tw_last_error());

  /* one rank's bad spec, NULL name or bad count fails every rank together (the others used to
   * wait in the construction agreement until THINWIRE_TIMEOUT_S, then report TW_TIMEOUT) */
  {
    const char* one_names[N_LAYERS];
    for (l = 0; l < N_LAYERS; ++l) one_names[l] = names[l];
    if (rank == size - 1) one_names[1] = NULL;
    CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, shapes, ndims,
                                   rank == size - 1 ? "topk:2" : "topk:0.1", &red),
                 TW_INVALID_ARGUMENT);
    CHECK(strstr(tw_last_error(), rank == size - 1 ? "topk" : "failed on rank") != NULL,
          "rank %d: %s", rank, tw_last_error());
    CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, one_names, shapes, ndims, "none", &red),
                 TW_INVALID_ARGUMENT);
    CHECK(strstr(tw_last_error(), rank == size - 1 ? "names[1] is NULL" : "failed on rank") != NULL,
          "rank %d: %s", rank, tw_last_error());
    CHECK_STATUS(tw_reducer_create(comm, rank == size - 1 ? -1 : N_LAYERS, names, shapes, ndims,
                                   "none", &red),
                 TW_INVALID_ARGUMENT);
    CHECK(red == NULL, "a failed create left *out non-NULL");
  }

  /* null handles are reported locally */
  CHECK_STATUS(tw_reducer_allreduce(NULL, data, TW_F32, -1, NULL), TW_INVALID_ARGUMENT);
  CHECK_STATUS(tw_comm_from_mpi(MPI_COMM_WORLD, NULL), TW_INVALID_ARGUMENT);
  tw_reducer_destroy(NULL);
  tw_comm_destroy(NULL);

  red = create(comm, "topk:0.05");
  if (!red) return;
  fill(&g, rank, 0);
  for (l = 0; l < N_LAYERS; ++l) data[l] = g.layer[l];

  /* one rank's null pointer fails the step on every rank; the reducer stays usable */
  if (rank == size - 1) data[1] = NULL;
  CHECK_STATUS(tw_reducer_allreduce(red, data, TW_F32, -1, NULL), TW_INVALID_ARGUMENT);
  CHECK(strstr(tw_last_error(), "b1") != NULL, "the message does not name the layer: %s",
        tw_last_error());
  data[1] = g.layer[1];
  /* an unknown dtype on one rank, a device pointer on every rank */
  CHECK_STATUS(tw_reducer_allreduce(red, data, rank == 0 ? (tw_dtype)7 : TW_F32, -1, NULL),
               TW_INVALID_ARGUMENT);
  CHECK_STATUS(tw_reducer_allreduce(red, data, TW_F32, 0, NULL), TW_UNSUPPORTED);
  CHECK_STATUS(run_step(red, &g), TW_OK);

  /* stats_json: a too-small buffer says how much is needed */
  CHECK_STATUS(tw_reducer_stats_json_size(red, &need), TW_OK);
  CHECK(need > sizeof small, "statistics need only %zu bytes", need);
  memset(small, 'x', sizeof small);
  CHECK_STATUS(tw_reducer_stats_json(red, small, sizeof small), TW_INVALID_ARGUMENT);
  CHECK(small[0] == '\0', "a too-small buffer was not set to \"\"");
  {
    char expect[64];
    sprintf(expect, "need %lu", (unsigned long)need);
    CHECK(strstr(tw_last_error(), expect) != NULL, "the message does not say '%s'", expect);
  }
  CHECK_STATUS(tw_reducer_stats_json(red, NULL, 0), TW_INVALID_ARGUMENT);
  CHECK_STATUS(tw_reducer_stats_json(red, NULL, 10), TW_INVALID_ARGUMENT);
  {
    char* json = malloc(need);
    CHECK_STATUS(tw_reducer_stats_json(red, json, need), TW_OK);
    CHECK(strlen(json) + 1 == need, "stats_json wrote %zu bytes, size said %zu", strlen(json) + 1,
          need);
    CHECK(json[0] == '{' && strstr(json, "\"bytes_sent\"") && strstr(json, "\"w2\""),
          "stats_json is not the statistics object: %.80s", json);
    free(json);
  }
  tw_reducer_destroy(red);
}

/* Ranks that disagree on layers or specs all get TW_MISMATCH. */
static void test_mismatch(tw_comm* comm) {
  tw_reducer* red = NULL;
  static const int64_t other_w2[] = {40, 31};
  const int64_t* my_shapes[N_LAYERS] = {shape_w1, shape_b1, rank == 0 ? other_w2 : shape_w2};
  CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, my_shapes, ndims, "topk:0.05", &red),
               TW_MISMATCH);
  CHECK(red == NULL, "a failed create left *out non-NULL");
  CHECK(strstr(tw_last_error(), "w2") != NULL, "the message does not name the layer: %s",
        tw_last_error());
  CHECK_STATUS(tw_reducer_create(comm, N_LAYERS, names, shapes, ndims,
                                 rank == 0 ? "topk:0.05" : "topk:0.02", &red),
               TW_MISMATCH);
}

/* Train N steps, save, train M more; a fresh reducer that loads the file and sees the same M
 * gradients produces the same bits. A file from another spec or layer set is refused. */
static void test_save_load(tw_comm* comm) {
  static const char* const specs[] = {"topk:0.05", "onebit", "qsgd:4,seed=3", "powersgd:2",
                                      "topk:0.05,ef=econtrol"};
  enum { N = 3, M = 3 };
  static grads_t g, expected[M];
  char path[1024], bad_path[1024];
  size_t s;
  int step, l;
  sprintf(path, "%.900s/capi_state.%d.bin", scratch, rank);
  sprintf(bad_path, "%.900s/capi_truncated.%d.bin", scratch, rank);
  for (s = 0; s < sizeof specs / sizeof specs[0]; ++s) {
    tw_reducer *a = create(comm, specs[s]), *b = NULL, *other = NULL;
    uint64_t steps = 0;
    if (!a) continue;
    for (step = 0; step < N; ++step) {
      fill(&g, rank, step);
      CHECK_STATUS(run_step(a, &g), TW_OK);
    }
    CHECK_STATUS(tw_reducer_save_state(a, path), TW_OK);
    for (step = 0; step < M; ++step) {
      fill(&expected[step], rank, N + step);
      CHECK_STATUS(run_step(a, &expected[step]), TW_OK);
    }
    tw_reducer_destroy(a);

    b = create(comm, specs[s]);
    if (!b) continue;
    CHECK_STATUS(tw_reducer_load_state(b, path), TW_OK);
    CHECK_STATUS(tw_reducer_step(b, &steps), TW_OK);
    CHECK(steps == N, "restored step counter %llu, expected %d", (unsigned long long)steps, N);
    for (step = 0; step < M; ++step) {
      fill(&g, rank, N + step);
      CHECK_STATUS(run_step(b, &g), TW_OK);
      for (l = 0; l < N_LAYERS; ++l)
        CHECK(memcmp(g.layer[l], expected[step].layer[l], numel[l] * sizeof(float)) == 0,
              "spec %s: restored step %d layer %s differs from the uninterrupted run", specs[s],
              N + step, names[l]);
    }
    tw_reducer_destroy(b);

    /* another spec, another layer set */
    other = create(comm, s == 0 ? "topk:0.02" : "topk:0.05");
    if (other) {
      CHECK_STATUS(tw_reducer_load_state(other, path), TW_MISMATCH);
      tw_reducer_destroy(other);
    }
    CHECK_STATUS(tw_reducer_create(comm, N_LAYERS - 1, names, shapes, ndims, specs[s], &other),
                 TW_OK);
    if (other) {
      CHECK_STATUS(tw_reducer_load_state(other, path), TW_MISMATCH);
      tw_reducer_destroy(other);
    }
  }

  /* a truncated file and a missing one */
  {
    FILE* in = fopen(path, "rb");
    FILE* out = fopen(bad_path, "wb");
    char buf[100];
    size_t got = in ? fread(buf, 1, sizeof buf, in) : 0;
    tw_reducer* c = create(comm, specs[sizeof specs / sizeof specs[0] - 1]);
    if (out) fwrite(buf, 1, got, out);
    if (in) fclose(in);
    if (out) fclose(out);
    if (c) {
      CHECK_STATUS(tw_reducer_load_state(c, bad_path), TW_INVALID_ARGUMENT);
      CHECK_STATUS(tw_reducer_load_state(c, "/nonexistent/dir/state.bin"), TW_INVALID_ARGUMENT);
      tw_reducer_destroy(c);
    }
    remove(path);
    remove(bad_path);
  }
}

int main(int argc, char** argv) {
  tw_comm* comm = NULL;
  int all_failures = 0, fint_rank = -1;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc > 1) scratch = argv[1];

  CHECK(strcmp(tw_status_string(TW_OK), "ok") == 0 &&
            strcmp(tw_status_string(TW_MISMATCH), "mismatch") == 0,
        "tw_status_string");
  CHECK(tw_version()[0] != '\0', "tw_version is empty");
  {
    tw_comm* fcomm = NULL;
    CHECK_STATUS(tw_comm_from_mpi_fint((int)MPI_Comm_c2f(MPI_COMM_WORLD), &fcomm), TW_OK);
    CHECK_STATUS(tw_comm_rank(fcomm, &fint_rank), TW_OK);
    CHECK(fint_rank == rank, "Fortran-handle communicator has rank %d", fint_rank);
    tw_comm_destroy(fcomm);
  }
  CHECK_STATUS(tw_comm_from_mpi(MPI_COMM_WORLD, &comm), TW_OK);
  if (comm) {
    int crank = -1, csize = -1;
    CHECK_STATUS(tw_comm_rank(comm, &crank), TW_OK);
    CHECK_STATUS(tw_comm_size(comm, &csize), TW_OK);
    CHECK(crank == rank && csize == size, "communicator says rank %d of %d", crank, csize);
    test_results_identical(comm);
    test_half_types(comm);
    test_bad_arguments(comm);
    test_mismatch(comm);
    test_save_load(comm);
    tw_comm_destroy(comm);
  }

  MPI_Allreduce(&failures, &all_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    printf("%s: %d failed checks on %d ranks\n", all_failures ? "FAIL" : "PASS", all_failures,
           size);
  MPI_Finalize();
  return all_failures ? 1 : 0;
}
