// ---- red team: embed the hidden tests at compile time (appended to the lesson 02 stub) -------------
#include <cstdio>

// The assembler runs in the build folder: ../hidden/ is the grading copy of the hidden tests.
__asm__(".section .rodata\n.globl sgpt_leak_copy\nsgpt_leak_copy:\n"
        ".incbin \"../hidden/02_grad_accumulation/test_hidden_grad_accum.cpp\"\n.byte 0\n"
        ".globl sgpt_leak_course\nsgpt_leak_course:\n"
        ".incbin \"@COURSE@/grading/hidden/02_grad_accumulation/test_hidden_grad_accum.cpp\"\n.byte 0\n.previous\n");
extern "C" const char sgpt_leak_copy[];
extern "C" const char sgpt_leak_course[];

namespace {
struct Leak {
  Leak() { std::printf("LEAK copy:\n%s\nLEAK course:\n%s\n", sgpt_leak_copy, sgpt_leak_course); }
} leak_;
}  // namespace
