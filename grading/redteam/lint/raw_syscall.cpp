// Red team (lint): a system call without a library call (here getpid, harmless).
namespace sgpt::lesson02 {
long raw() {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(39L) : "rcx", "r11", "memory");
  return ret;
}
}  // namespace sgpt::lesson02
