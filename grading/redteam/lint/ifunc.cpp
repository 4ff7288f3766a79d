// Red team (lint): an IFUNC resolver runs while the loader relocates, before any initialiser.
extern "C" int impl() { return 0; }
extern "C" int (*resolve())() { return impl; }
int f() __attribute__((ifunc("resolve")));
