// A program whose rank 1 stops taking part while rank 0 waits for it: in an all_reduce (the
// timeout set with set_timeout), an async all_reduce's wait (the timeout from SGPT_COMM_TIMEOUT),
// or a recv of a message that never comes. The communication timeout must end the whole job with
// a message naming the waiting rank and the operation. Registered as ctests that pass when the
// output shows that message and the job ended within the ctest time limit.

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "comm/communicator.hpp"

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "sync";
  auto world = sgpt::init_distributed(argc, argv, sgpt::Backend::MPI);
  if (mode == "sync") world->set_timeout(2);
  if (mode == "async") world->set_call_checks(false);  // the wait itself must time out, not the check
  sgpt::Tensor t = sgpt::Tensor::zeros({8});
  world->all_reduce(t);  // everyone is alive
  if (world->rank() == 1) {
    std::fprintf(stderr, "[rank 1] stalling\n");
    std::this_thread::sleep_for(std::chrono::seconds(120));
  }
  if (mode == "sync") world->all_reduce(t);
  if (mode == "async") world->all_reduce_async(t).wait();
  if (mode == "recv") world->recv(t, 1);
  std::printf("rank %d was not aborted\n", world->rank());
  return 0;
}
