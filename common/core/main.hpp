#pragma once
/// @file main.hpp
/// @brief The shared ending of every ScaleGPT program: exceptions become one clear line and an
/// exit code, never a crash.

#include <functional>

namespace sgpt {

/// Runs `body` and returns its exit code. An sgpt::NotImplemented prints which lesson task to
/// finish and returns 2; any other exception prints "<program>: <what>" and returns 1.
int run_guarded(const char* program, const std::function<int()>& body);

}  // namespace sgpt
