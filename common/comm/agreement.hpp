#pragma once
/// @file agreement.hpp
/// @brief Making the ranks of a job agree before they work: the same settings on every rank, and
/// a failure on one rank reported by all of them.
///
/// A job whose ranks were started with different flags trains silently apart (another seed,
/// another learning rate), and a set-up step that fails on one rank only (a file missing on one
/// node) leaves the others waiting in their next collective. These helpers turn both into the
/// same clear error on every rank, thrown as CollectiveError: since every rank throws it at the
/// same point, a program can print it and exit normally on each rank, with no abort needed.

#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.hpp"

namespace sgpt {

/// An error that every rank of a group throws at the same point, with the same cause.
class CollectiveError : public Error {
 public:
  using Error::Error;
};

/// Every rank's `text`, in rank order (a collective of the group: two all_gathers).
std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& text);

/// One setting that must be the same on every rank (a command-line flag and its value).
struct Setting {
  std::string name;   ///< e.g. "--lr"
  std::string value;  ///< the value as text, written the same way on every rank
};

/// Checks that every rank of `comm` holds the same settings: each rank hashes every name=value
/// pair (core/checksum.hpp) and the hashes are compared across ranks, so only 16 bytes per setting
/// travel. On a difference, every rank throws CollectiveError naming the first differing setting
/// and each rank's value of it, e.g. "the ranks were started with different --lr: rank 0: 0.003,
/// rank 1: 0.001". `what` names the settings in the message ("flags").
void check_same_on_all_ranks(Communicator& comm, const std::vector<Setting>& settings, const std::string& what);

/// Runs `fn` on this rank, then agrees with the other ranks on the outcome: if `fn` threw on any
/// rank, every rank throws CollectiveError carrying the message of the lowest failing rank
/// (prefixed "rank r: "). With `comm` null (one process) it just runs `fn`.
void run_on_all_ranks(Communicator* comm, const std::function<void()>& fn);

}  // namespace sgpt
