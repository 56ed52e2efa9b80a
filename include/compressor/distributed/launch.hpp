// Launch checks that need no MPI: a program built without MPI (or that does
// not train distributed) and started by mpirun/srun as one of several ranks
// would train N independent copies that all write the same output folder;
// require_single_process() stops it with a clear error instead.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include "compressor/core/error.hpp"

namespace compressor::distributed {

/// The number of ranks the launcher started, from the environment it sets
/// (Open MPI: OMPI_COMM_WORLD_SIZE; MPICH/Hydra and PMI launchers: PMI_SIZE),
/// and the variable it came from; 1 and "" when not started by a launcher.
inline std::pair<std::int64_t, std::string> launched_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(var);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    const long long n = std::strtoll(v, &end, 10);
    require(end != v && *end == '\0' && n >= 1, "distributed: environment variable ", var, "='", v,
            "' is not a positive rank count");
    return {n, var};
  }
  return {1, ""};
}

/// Throws Error when the process was started as one of several ranks; for
/// programs that run as a single process (built without MPI, or not
/// distributed).
inline void require_single_process(std::string_view program) {
  const auto [n, var] = launched_world_size();
  require(n == 1, program, " was started as one of ", n, " ranks (", var, "=", n,
          ") but runs as a single process (built without MPI, or not a distributed program): "
          "every rank would train alone and write the same outputs. Run it without "
          "mpirun/srun (data-parallel training: docs/distributed.md)");
}

}  // namespace compressor::distributed
