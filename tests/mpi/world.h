// What the tests run under mpirun share: the job's communicator, and a directory every rank of
// the job names the same.
#pragma once

#include <cstring>
#include <memory>
#include <string>

#include "harness.h"
#include "longctx/dist/communicator.h"

namespace longctx::test {

// The job's ranks (MPI under mpirun, else this process alone), made once for the whole binary.
inline dist::Communicator& world() {
  static const std::unique_ptr<dist::Communicator> comm = dist::make_communicator("auto");
  return *comm;
}

// A fresh directory made by rank 0, its path sent to the others (one machine: ctest's jobs).
inline std::string shared_temp_dir(dist::Communicator& comm) {
  const Tensor path = Tensor::zeros({512}, DType::i32);
  char* text = static_cast<char*>(path.data());
  if (comm.rank() == 0) {
    std::string tmpl = testing::TempDir() + "longctx_mpi_XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    std::strncpy(text, tmpl.c_str(), path.nbytes() - 1);
  }
  comm.broadcast(path, 0);
  return text;
}

}  // namespace longctx::test
