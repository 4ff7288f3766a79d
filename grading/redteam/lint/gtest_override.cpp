// Red team (lint): replace GoogleTest's verdict inside the test binary.
namespace testing {
class TestResult {
 public:
  bool Passed() const;
};
bool TestResult::Passed() const { return true; }
}  // namespace testing
