#include "core/main.hpp"

#include <cstdio>
#include <exception>
#include <string>

#include "core/check.hpp"

namespace sgpt {

int run_guarded(const char* program, const std::function<int()>& body) {
  std::string name = program ? program : "scalegpt";
  if (auto slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);
  try {
    return body();
  } catch (const NotImplemented& e) {
    std::fprintf(stderr, "%s: %s\nFinish that task, then run this program again.\n", name.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
    return 1;
  }
}

}  // namespace sgpt
