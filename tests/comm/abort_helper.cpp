// A program whose rank 1 throws while the other ranks wait in a collective. The terminate handler
// installed by init_distributed must end the whole job (MPI_Abort) instead of letting it hang.
// Registered as a ctest that passes when the output shows the failure and the job ended in time.

#include <cstdio>

#include "comm/communicator.hpp"

int main(int argc, char** argv) {
  auto world = sgpt::init_distributed(argc, argv, sgpt::Backend::MPI);
  sgpt::Tensor t = sgpt::Tensor::zeros({8});
  world->all_reduce(t);  // everyone is alive
  if (world->rank() == 1) throw sgpt::Error("deliberate failure on rank 1");
  world->all_reduce(t);  // the other ranks wait here for rank 1
  std::printf("rank %d was not aborted\n", world->rank());
  return 0;
}
