/* thinwire from C: compressed allreduce of two layers' gradients for a few steps.
 *
 *   mpirun -np 2 ./build/examples/c/c_allreduce [SPEC [STEPS [STATE_PREFIX]]]
 *
 * SPEC defaults to "powersgd:2". With STATE_PREFIX every rank saves its compression state to
 * STATE_PREFIX.<rank>.bin at the end (and restores it first if the file exists), so a second
 * run continues where the first stopped. Rank 0 prints the statistics as JSON. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <thinwire/thinwire.h>

#define TRY(call)                                                                           \
  do {                                                                                      \
    tw_status s_ = (call);                                                                  \
    if (s_ != TW_OK) {                                                                      \
      fprintf(stderr, "%s failed: %s: %s\n", #call, tw_status_string(s_), tw_last_error()); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                         \
    }                                                                                       \
  } while (0)

int main(int argc, char** argv) {
  const char* spec = argc > 1 ? argv[1] : "powersgd:2";
  const char* prefix = argc > 3 ? argv[3] : NULL;
  char* steps_end = NULL;
  const long steps_arg = argc > 2 ? strtol(argv[2], &steps_end, 10) : 10;
  int steps;
  static float weight[256 * 784], bias[256];
  const char* names[2] = {"fc1.weight", "fc1.bias"};
  const int64_t weight_shape[2] = {256, 784}, bias_shape[1] = {256};
  const int64_t* shapes[2] = {weight_shape, bias_shape};
  const int ndims[2] = {2, 1};
  void* grads[2] = {weight, bias};
  tw_comm* comm = NULL;
  tw_reducer* reducer = NULL;
  char path[4096];
  int rank = 0, step;
  uint64_t done = 0;
  size_t i, len = 0;
  char* json;

  /* Checked before MPI starts, alike on every rank: usage, or a STEPS that is not a count. */
  if (argc > 4 || (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) ||
      (argc > 2 &&
       (steps_end == argv[2] || *steps_end != '\0' || steps_arg < 0 || steps_arg > 1000000))) {
    fprintf(stderr,
            "usage: c_allreduce [SPEC [STEPS [STATE_PREFIX]]]\n"
            "  SPEC a thinwire spec (default powersgd:2), STEPS a count from 0 to 1000000 "
            "(default 10)\n");
    return argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) ? 0 : 2;
  }
  steps = (int)steps_arg;

  MPI_Init(&argc, &argv);
  TRY(tw_comm_from_mpi(MPI_COMM_WORLD, &comm));
  TRY(tw_comm_rank(comm, &rank));
  TRY(tw_reducer_create(comm, 2, names, shapes, ndims, spec, &reducer));
  if (prefix) {
    FILE* f;
    snprintf(path, sizeof path, "%s.%d.bin", prefix, rank);
    if ((f = fopen(path, "rb")) != NULL) {
      fclose(f);
      TRY(tw_reducer_load_state(reducer, path));
    }
  }
  TRY(tw_reducer_step(reducer, &done));

  srand(1234u + (unsigned)rank);
  for (step = 0; step < steps; ++step) {
    /* stand-in gradients: a low-rank part shared by all ranks plus per-rank noise */
    for (i = 0; i < 256 * 784; ++i)
      weight[i] = (float)((i / 784) % 7) * (float)((i % 784) % 5) * 0.01f +
                  (float)rand() / (float)RAND_MAX - 0.5f;
    for (i = 0; i < 256; ++i) bias[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    TRY(tw_reducer_allreduce(reducer, grads, TW_F32, -1, NULL));
  }

  if (prefix) TRY(tw_reducer_save_state(reducer, path));
  TRY(tw_reducer_stats_json_size(reducer, &len));
  json = malloc(len);
  TRY(tw_reducer_stats_json(reducer, json, len));
  if (rank == 0)
    printf("thinwire %s, spec '%s', steps %llu..%llu\n%s\n", tw_version(), spec,
           (unsigned long long)done, (unsigned long long)(done + (uint64_t)steps), json);
  free(json);
  tw_reducer_destroy(reducer);
  tw_comm_destroy(comm);
  MPI_Finalize();
  return 0;
}
