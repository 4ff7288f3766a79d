// Red team (lint): run before the grader's reporter, to read the key first.
static void first(int, char**, char**) {}
__attribute__((section(".preinit_array"), used)) static void (*const p)(int, char**, char**) = &first;
