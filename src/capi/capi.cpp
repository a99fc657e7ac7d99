// The C API (include/thinwire/thinwire.h) over the C++ API. Every entry point runs its body
// inside guarded(), which turns any exception into a tw_status and a thread-local message, so
// nothing C++ crosses the boundary.
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "thinwire/thinwire.h"
#include "thinwire/thinwire.hpp"

struct tw_comm {
  thinwire::Communicator comm;
};

struct tw_reducer {
  thinwire::Reducer reducer;
};

// tw_status_string relies on the numbers being equal.
static_assert(TW_INVALID_ARGUMENT == static_cast<int>(thinwire::ErrorCode::invalid_argument) &&
              TW_MISMATCH == static_cast<int>(thinwire::ErrorCode::mismatch) &&
              TW_TIMEOUT == static_cast<int>(thinwire::ErrorCode::timeout) &&
              TW_TRANSPORT_ERROR == static_cast<int>(thinwire::ErrorCode::transport_error) &&
              TW_UNSUPPORTED == static_cast<int>(thinwire::ErrorCode::unsupported) &&
              TW_INTERNAL == static_cast<int>(thinwire::ErrorCode::internal));

namespace {

thread_local std::string last_error;

tw_status record(tw_status status, std::string message) {
  // Assigning may itself throw bad_alloc; an empty message is better than a crash.
  try {
    last_error = std::move(message);
  } catch (...) {
    last_error.clear();
  }
  return status;
}

tw_status to_status(thinwire::ErrorCode code) {
  switch (code) {
    case thinwire::ErrorCode::invalid_argument:
      return TW_INVALID_ARGUMENT;
    case thinwire::ErrorCode::mismatch:
      return TW_MISMATCH;
    case thinwire::ErrorCode::timeout:
      return TW_TIMEOUT;
    case thinwire::ErrorCode::transport_error:
      return TW_TRANSPORT_ERROR;
    case thinwire::ErrorCode::unsupported:
      return TW_UNSUPPORTED;
    case thinwire::ErrorCode::internal:
      return TW_INTERNAL;
  }
  return TW_INTERNAL;
}

template <typename F>
tw_status guarded(F&& body) noexcept {
  try {
    return body();
  } catch (const thinwire::Error& e) {
    return record(to_status(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return record(TW_INTERNAL, "thinwire C API error: out of memory");
  } catch (const std::exception& e) {
    return record(TW_INTERNAL,
                  std::string("thinwire C API error: unexpected exception: ") + e.what());
  } catch (...) {
    return record(TW_INTERNAL, "thinwire C API error: unexpected non-standard exception");
  }
}

tw_status invalid(const std::string& what) {
  return record(TW_INVALID_ARGUMENT, "thinwire C API error: " + what);
}

thinwire::DType to_dtype(tw_dtype dtype) {
  switch (dtype) {
    case TW_F32:
      return thinwire::DType::f32;
    case TW_F16:
      return thinwire::DType::f16;
    case TW_BF16:
      return thinwire::DType::bf16;
  }
  // Not a dtype: let the reducer report it on every rank (its per-step check knows only
  // f32, f16 and bf16), instead of failing here and leaving the other ranks waiting.
  return static_cast<thinwire::DType>(0xff);
}

tw_status make_comm(MPI_Comm comm, tw_comm** out) {
  if (!out) return invalid("tw_comm_from_mpi: out is NULL");
  *out = nullptr;
  return guarded([&] {
    *out = new tw_comm{thinwire::Communicator::from_mpi(comm)};
    return TW_OK;
  });
}

}  // namespace

extern "C" {

tw_status tw_comm_from_mpi(MPI_Comm comm, tw_comm** out) {
  return make_comm(comm, out);
}

tw_status tw_comm_from_mpi_fint(int fortran_comm, tw_comm** out) {
  return make_comm(MPI_Comm_f2c(static_cast<MPI_Fint>(fortran_comm)), out);
}

tw_status tw_comm_rank(const tw_comm* comm, int* rank) {
  if (!comm || !rank) return invalid("tw_comm_rank: NULL argument");
  return guarded([&] {
    *rank = comm->comm.rank();
    return TW_OK;
  });
}

tw_status tw_comm_size(const tw_comm* comm, int* size) {
  if (!comm || !size) return invalid("tw_comm_size: NULL argument");
  return guarded([&] {
    *size = comm->comm.size();
    return TW_OK;
  });
}

void tw_comm_destroy(tw_comm* comm) {
  delete comm;  // Communicator's destructor does not throw
}

tw_status tw_reducer_create(tw_comm* comm, int n_layers, const char* const* names,
                            const int64_t* const* shapes, const int* ndims, const char* spec,
                            tw_reducer** out) {
  if (!out) return invalid("tw_reducer_create: out is NULL");
  *out = nullptr;
  if (!comm) return invalid("tw_reducer_create: comm is NULL");
  // A bad argument on one rank must fail every rank, as the Reducer's own checks do, not
  // leave the others waiting in the construction agreement: this rank goes into it with a
  // layer the constructor refuses (a negative dimension) and raises its own message after.
  std::string local_problem;
  std::vector<thinwire::Layer> layers;
  if (!spec) local_problem = "tw_reducer_create: spec is NULL";
  if (n_layers < 0) {
    local_problem =
        "tw_reducer_create: n_layers is " + std::to_string(n_layers) + ", expected >= 0";
  } else if (n_layers > 0 && (!names || !shapes || !ndims)) {
    local_problem = "tw_reducer_create: names, shapes and ndims must not be NULL";
  } else {
    layers.resize(static_cast<std::size_t>(n_layers));
    for (int i = 0; i < n_layers && local_problem.empty(); ++i) {
      if (!names[i]) {
        local_problem = "tw_reducer_create: names[" + std::to_string(i) + "] is NULL";
      } else if (ndims[i] < 0 || (ndims[i] > 0 && !shapes[i])) {
        local_problem = "tw_reducer_create: layer " + std::to_string(i) + " '" + names[i] +
                        "' has ndims " + std::to_string(ndims[i]) +
                        (ndims[i] > 0 ? " and a NULL shape" : ", expected >= 0");
      } else {
        layers[i].name = names[i];
        layers[i].shape.assign(shapes[i], shapes[i] + ndims[i]);
      }
    }
  }
  if (!local_problem.empty()) layers = {thinwire::Layer{"(invalid arguments)", {-1}}};
  return guarded([&] {
    try {
      // The Reducer checks shapes and the spec (parsed inside, so that a spec that does not
      // parse fails every rank too) and compares layers and specs across ranks.
      *out = new tw_reducer{
          thinwire::Reducer(comm->comm, std::move(layers), std::string(spec ? spec : ""))};
    } catch (const thinwire::Error&) {
      if (!local_problem.empty()) return invalid(local_problem);
      throw;
    }
    if (!local_problem.empty()) {  // not reached: the constructor refuses the layer above
      delete *out;
      *out = nullptr;
      return invalid(local_problem);
    }
    return TW_OK;
  });
}

tw_status tw_reducer_allreduce(tw_reducer* r, void* const* data, tw_dtype dtype, int device,
                               void* cuda_stream) {
  if (!r) return invalid("tw_reducer_allreduce: reducer is NULL");
  return guarded([&] {
    // A NULL data array or pointer is passed on as null tensors: the reducer's per-step
    // check reports it on every rank.
    const auto& layers = r->reducer.layers();
    const thinwire::DType type = to_dtype(dtype);
    std::vector<thinwire::TensorView> views;
    views.reserve(layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) {
      void* p = data ? data[i] : nullptr;
      views.push_back(
          device < 0 ? thinwire::TensorView::host(p, layers[i].numel(), type)
                     : thinwire::TensorView::cuda(p, layers[i].numel(), type, device, cuda_stream));
    }
    r->reducer.allreduce(views);
    return TW_OK;
  });
}

tw_status tw_reducer_stats_json_size(tw_reducer* r, size_t* len) {
  if (!r || !len) return invalid("tw_reducer_stats_json_size: NULL argument");
  return guarded([&] {
    *len = r->reducer.stats().to_json().size() + 1;
    return TW_OK;
  });
}

tw_status tw_reducer_stats_json(tw_reducer* r, char* buf, size_t len) {
  if (!r) return invalid("tw_reducer_stats_json: reducer is NULL");
  if (!buf && len > 0) return invalid("tw_reducer_stats_json: buf is NULL but len > 0");
  return guarded([&] {
    const std::string json = r->reducer.stats().to_json();
    if (len < json.size() + 1) {
      if (len > 0) buf[0] = '\0';
      return invalid("tw_reducer_stats_json: the buffer holds " + std::to_string(len) +
                     " bytes, the statistics need " + std::to_string(json.size() + 1) +
                     " (see tw_reducer_stats_json_size)");
    }
    std::memcpy(buf, json.c_str(), json.size() + 1);
    return TW_OK;
  });
}

tw_status tw_reducer_save_state(tw_reducer* r, const char* path) {
  if (!r || !path) return invalid("tw_reducer_save_state: NULL argument");
  return guarded([&] {
    r->reducer.save_state(std::string(path));
    return TW_OK;
  });
}

tw_status tw_reducer_load_state(tw_reducer* r, const char* path) {
  if (!r || !path) return invalid("tw_reducer_load_state: NULL argument");
  return guarded([&] {
    r->reducer.load_state(std::string(path));
    return TW_OK;
  });
}

tw_status tw_reducer_step(const tw_reducer* r, uint64_t* step) {
  if (!r || !step) return invalid("tw_reducer_step: NULL argument");
  *step = r->reducer.step();
  return TW_OK;
}

void tw_reducer_destroy(tw_reducer* r) {
  delete r;
}

const char* tw_last_error(void) {
  return last_error.c_str();
}

const char* tw_status_string(tw_status status) {
  switch (status) {
    case TW_OK:
      return "ok";
    case TW_INVALID_ARGUMENT:
    case TW_MISMATCH:
    case TW_TIMEOUT:
    case TW_TRANSPORT_ERROR:
    case TW_UNSUPPORTED:
    case TW_INTERNAL:
      return thinwire::to_string(static_cast<thinwire::ErrorCode>(status));
  }
  return "unknown";
}

const char* tw_version(void) {
  return THINWIRE_VERSION_STRING;
}

}  // extern "C"
