/* A user's C program built with pkg-config against the INSTALLED thinwire (thinwire.pc):
 * a few steps of 1-bit compression, identical results on every rank, and a bad spec's status.
 * Prints "pkgconfig consumer: OK" on rank 0 when every rank passed. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <thinwire/thinwire.h>

enum { ROWS = 64, COLS = 100, N = ROWS * COLS };

int main(int argc, char** argv) {
  static float grad[N], root[N];
  const char* names[1] = {"fc.weight"};
  const int64_t shape[2] = {ROWS, COLS};
  const int64_t* shapes[1] = {shape};
  const int ndims[1] = {2};
  void* data[1] = {grad};
  tw_comm* comm = NULL;
  tw_reducer* red = NULL;
  int rank = 0, failures = 0, all = 0, step, i;

  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (tw_comm_from_mpi(MPI_COMM_WORLD, &comm) != TW_OK ||
      tw_reducer_create(comm, 1, names, shapes, ndims, "onebit", &red) != TW_OK) {
    fprintf(stderr, "rank %d: setup failed: %s\n", rank, tw_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  srand(7u + (unsigned)rank);
  for (step = 0; step < 3; ++step) {
    for (i = 0; i < N; ++i) grad[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    if (tw_reducer_allreduce(red, data, TW_F32, -1, NULL) != TW_OK) {
      fprintf(stderr, "rank %d: allreduce failed: %s\n", rank, tw_last_error());
      ++failures;
    }
    memcpy(root, grad, sizeof grad);
    MPI_Bcast(root, N, MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (memcmp(root, grad, sizeof grad) != 0) {
      fprintf(stderr, "rank %d: step %d: result differs from rank 0's\n", rank, step);
      ++failures;
    }
  }
  tw_reducer_destroy(red);
  red = NULL;
  if (tw_reducer_create(comm, 1, names, shapes, ndims, "onebit:3", &red) != TW_INVALID_ARGUMENT ||
      red != NULL) {
    fprintf(stderr, "rank %d: a bad spec did not give TW_INVALID_ARGUMENT\n", rank);
    ++failures;
  }
  tw_comm_destroy(comm);
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    printf("pkgconfig consumer: %s (thinwire %s)\n", all ? "FAILED" : "OK", tw_version());
  MPI_Finalize();
  return all ? 1 : 0;
}
