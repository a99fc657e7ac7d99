// The NCCL host API over MPI for tests (see fake_nccl.hpp). Linked into a test executable,
// these definitions are the ones NcclTransport's calls bind to: the executable's own symbols
// come first, so libnccl (still a dependency of the library target) is never entered.
#include "fake_nccl.hpp"

#include <mpi.h>
#include <nccl.h>

#include <cstring>
#include <vector>

struct ncclComm {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  std::vector<MPI_Request> pending;      // init's idup, then the collectives in flight
  std::vector<MPI_Request> cancellable;  // receives, which an abort can cancel
  ncclResult_t async_error = ncclSuccess;
  int tag = 0;  // for the point-to-point calls of a group
};

namespace thinwire::test::fake_nccl {
namespace {

constexpr char kIdMagic[] = "thinwire fake NCCL id";

Fault g_fault = Fault::none;
Counters g_counters;
std::vector<MPI_Request> g_abandoned;
std::string g_last_error;

Fault take_fault() {
  const Fault f = g_fault;
  g_fault = Fault::none;
  return f;
}

MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclFloat32:
      return MPI_FLOAT;
    case ncclFloat64:
      return MPI_DOUBLE;
    case ncclInt64:
      return MPI_INT64_T;
    case ncclUint64:
      return MPI_UINT64_T;
    case ncclInt32:
      return MPI_INT32_T;
    case ncclUint8:
    case ncclInt8:
      return MPI_UNSIGNED_CHAR;
    default:
      return MPI_DATATYPE_NULL;
  }
}

std::size_t type_size(ncclDataType_t t) {
  int s = 0;
  MPI_Type_size(mpi_type(t), &s);
  return static_cast<std::size_t>(s);
}

MPI_Op mpi_op(ncclRedOp_t op) {
  switch (op) {
    case ncclSum:
      return MPI_SUM;
    case ncclMin:
      return MPI_MIN;
    case ncclMax:
      return MPI_MAX;
    default:
      return MPI_OP_NULL;
  }
}

// The start of a collective: the fault for it, and whether the call may go on.
ncclResult_t begin(ncclComm* comm) {
  if (!comm || comm->comm == MPI_COMM_NULL) return ncclInvalidArgument;
  ++g_counters.collectives;
  switch (take_fault()) {
    case Fault::call_fails:
      g_last_error = "fake NCCL: injected failure of the call";
      return ncclSystemError;
    case Fault::async_remote_error:
      comm->async_error = ncclRemoteError;
      g_last_error = "fake NCCL: injected remote error";
      break;
    default:
      break;
  }
  return ncclSuccess;
}

}  // namespace

void inject(Fault fault) {
  g_fault = fault;
}
Counters counters() {
  return g_counters;
}
int abandoned() {
  return static_cast<int>(g_abandoned.size());
}

void drive_abandoned() {
  std::vector<MPI_Request> still;
  for (MPI_Request& r : g_abandoned) {
    int done = 0;
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (!done) still.push_back(r);
  }
  g_abandoned.swap(still);
}

}  // namespace thinwire::test::fake_nccl

namespace fk = thinwire::test::fake_nccl;

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id, 0, sizeof *id);
  std::memcpy(id->internal, fk::kIdMagic, sizeof fk::kIdMagic);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* out, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t* config) {
  *out = nullptr;
  if (std::memcmp(id.internal, fk::kIdMagic, sizeof fk::kIdMagic) != 0) return ncclInvalidArgument;
  if (!config || config->blocking != 0) return ncclInvalidUsage;  // thinwire asks non-blocking
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (nranks != world || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  ++fk::g_counters.inits;
  auto* comm = new ncclComm;
  comm->rank = rank;
  comm->size = nranks;
  if (fk::take_fault() == fk::Fault::init_never_completes) {
    // A request that never completes: a receive nobody sends to.
    MPI_Comm_dup(MPI_COMM_SELF, &comm->comm);
    static int sink = 0;
    MPI_Request r;
    MPI_Irecv(&sink, 1, MPI_INT, 0, 999, comm->comm, &r);
    comm->cancellable.push_back(r);
  } else {
    MPI_Request r;
    MPI_Comm_idup(MPI_COMM_WORLD, &comm->comm, &r);
    comm->pending.push_back(r);
  }
  *out = comm;
  return ncclInProgress;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* state) {
  if (!comm) return ncclInvalidArgument;
  if (comm->async_error != ncclSuccess) {
    *state = comm->async_error;
    return ncclSuccess;
  }
  bool all_done = true;
  for (std::vector<MPI_Request>* list : {&comm->pending, &comm->cancellable}) {
    int done = 1;
    if (!list->empty())
      MPI_Testall(static_cast<int>(list->size()), list->data(), &done, MPI_STATUSES_IGNORE);
    if (done)
      list->clear();
    else
      all_done = false;
  }
  *state = all_done ? ncclSuccess : ncclInProgress;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  ++fk::g_counters.aborts;
  // Receives are cancelled. MPI cannot cancel a collective: what is still running is kept
  // until a late peer lets it complete; the communicator is then left to MPI_Finalize.
  for (MPI_Request& r : comm->cancellable) {
    MPI_Cancel(&r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
  }
  fk::g_counters.pending_after_abort += static_cast<int>(comm->pending.size());
  for (MPI_Request r : comm->pending) fk::g_abandoned.push_back(r);
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  ++fk::g_counters.finalizes;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  ++fk::g_counters.destroys;
  for (std::vector<MPI_Request>* list : {&comm->pending, &comm->cancellable})
    if (!list->empty())
      MPI_Waitall(static_cast<int>(list->size()), list->data(), MPI_STATUSES_IGNORE);
  if (comm->comm != MPI_COMM_NULL) MPI_Comm_free(&comm->comm);
  delete comm;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error";
    case ncclSystemError:
      return "unhandled system error (fake NCCL)";
    case ncclInternalError:
      return "internal error (fake NCCL)";
    case ncclInvalidArgument:
      return "invalid argument (fake NCCL)";
    case ncclInvalidUsage:
      return "invalid usage (fake NCCL)";
    case ncclRemoteError:
      return "remote process exited or there was a network error (fake NCCL)";
    case ncclInProgress:
      return "NCCL operation in progress (fake NCCL)";
    default:
      return "unknown result (fake NCCL)";
  }
}

const char* ncclGetLastError(ncclComm_t) {
  return fk::g_last_error.c_str();
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t) {
  if (const ncclResult_t r = fk::begin(comm); r != ncclSuccess) return r;
  MPI_Request req;
  MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, static_cast<int>(count),
                 fk::mpi_type(type), fk::mpi_op(op), comm->comm, &req);
  comm->pending.push_back(req);
  return ncclInProgress;
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t) {
  if (const ncclResult_t r = fk::begin(comm); r != ncclSuccess) return r;
  const auto* own = static_cast<unsigned char*>(recv) +
                    static_cast<std::size_t>(comm->rank) * count * fk::type_size(type);
  MPI_Request req;
  MPI_Iallgather(send == own ? MPI_IN_PLACE : send, static_cast<int>(count), fk::mpi_type(type),
                 recv, static_cast<int>(count), fk::mpi_type(type), comm->comm, &req);
  comm->pending.push_back(req);
  return ncclInProgress;
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t) {
  if (const ncclResult_t r = fk::begin(comm); r != ncclSuccess) return r;
  if (comm->rank == root && send != recv) std::memmove(recv, send, count * fk::type_size(type));
  MPI_Request req;
  MPI_Ibcast(recv, static_cast<int>(count), fk::mpi_type(type), root, comm->comm, &req);
  comm->pending.push_back(req);
  return ncclInProgress;
}

// Point-to-point calls are posted at once (MPI's are non-blocking anyway); a group counts
// as one collective for the fault hooks, and its end is in progress until they completed.
namespace {
int g_group_depth = 0;
bool g_group_counted = false;
ncclComm* g_group_comm = nullptr;
}  // namespace

ncclResult_t ncclGroupStart() {
  if (g_group_depth++ == 0) g_group_counted = false, g_group_comm = nullptr;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (g_group_depth == 0) return ncclInvalidUsage;
  if (--g_group_depth > 0) return ncclSuccess;
  const bool busy =
      g_group_comm && (!g_group_comm->pending.empty() || !g_group_comm->cancellable.empty());
  return busy ? ncclInProgress : ncclSuccess;
}

namespace {
ncclResult_t point_to_point(bool is_send, const void* buf, size_t count, ncclDataType_t type,
                            int peer, ncclComm_t comm) {
  if (!g_group_counted) {
    if (const ncclResult_t r = fk::begin(comm); r != ncclSuccess) return r;
    g_group_counted = true;
  }
  if (!comm || peer < 0 || peer >= comm->size) return ncclInvalidArgument;
  g_group_comm = comm;
  MPI_Request req;
  const int n = static_cast<int>(count);
  if (is_send) {
    MPI_Isend(buf, n, fk::mpi_type(type), peer, 7, comm->comm, &req);
    comm->pending.push_back(req);
  } else {
    MPI_Irecv(const_cast<void*>(buf), n, fk::mpi_type(type), peer, 7, comm->comm, &req);
    comm->cancellable.push_back(req);
  }
  return ncclSuccess;
}
}  // namespace

ncclResult_t ncclSend(const void* send, size_t count, ncclDataType_t type, int peer,
                      ncclComm_t comm, cudaStream_t) {
  return point_to_point(true, send, count, type, peer, comm);
}

ncclResult_t ncclRecv(void* recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t) {
  return point_to_point(false, recv, count, type, peer, comm);
}
