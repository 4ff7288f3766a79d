"""Mechanical checks of a submission's compiled objects (the lesson's static library, liblessonNN.a).

Two lists, both matched against what the objects *use* (their undefined symbols, demangled):

* the lesson's own list, ``"forbidden"`` in points.json: the library functions a task asks the
  student to write (lesson 01's AdamW, lesson 04's library collectives...). A hit costs that task's
  points, with a message naming the call. An entry with ``"files"`` looks only at what those student
  files call (lesson 05's conversions.cpp may not use the kernels, which convert 16-bit tensors,
  while its mixed-precision step must).
* the sandbox list below, the same for every lesson: what graded code has no reason to call and what
  could reach the grader's channel or the machine (files, processes, the environment, raw system
  calls, GoogleTest's internals). A hit costs the whole lesson. The objects must also not hold a
  .preinit_array (code that would run before the grader's reporter), IFUNC resolvers (code the
  loader runs even earlier) or system-call instructions.

The lesson's list is matched against the student's own files only, compiled a second time without
optimisation (the lessonNN_lint objects of a graded build, see cmake/ScaleGPTLessons.cmake): there a
call to an inline library function (core/half.hpp's f32_to_bf16, a header-only helper) stays a call,
to a weak definition that nm lists, and the lesson's given files (lesson 10's tp_gpt.cpp) do not
count. Without those objects, the library's undefined symbols are used.

A student who needs one of these for a good reason (printing goes through printf/std::cout, which
are allowed) should ask; the list is in this file.
"""
import pathlib
import re
import subprocess

# (regex on the demangled undefined symbol, why)
SANDBOX_SYMBOLS = [
    (r"^(open|open64|openat|openat64|creat|creat64|fopen|fopen64|freopen|freopen64|fdopen|opendir|"
     r"__open_2|__open64_2|__openat_2)$", "opens files"),
    (r"^(read|write|pread|pwrite|pread64|pwrite64|readv|writev|lseek|lseek64|dup|dup2|dup3|"
     r"ftruncate|ftruncate64|truncate|unlink|unlinkat|rename|renameat|chmod|fchmod|chown|fchown|"
     r"symlink|link|mkdir|rmdir|readlink|__read_chk)$", "works on file descriptors or paths"),
    (r"^(fork|vfork|clone|clone3|_Fork|execve|execv|execvp|execvpe|execl|execlp|execle|fexecve|system|"
     r"popen|posix_spawn|posix_spawnp|daemon|setsid|setpgid|setpgrp|kill|killpg|tgkill|ptrace|"
     r"prctl|process_vm_readv|process_vm_writev|setrlimit|prlimit|prlimit64)$", "starts or controls processes"),
    (r"^(syscall|mmap|mmap64|mprotect|munmap|dlopen|dlsym|dlvsym|dladdr|dl_iterate_phdr|socket|"
     r"connect|bind|_exit|_Exit|exit|quick_exit|at_quick_exit|getenv|secure_getenv|__libc_secure_getenv|"
     r"environ|__environ|setenv|putenv|unsetenv|clearenv)$", "reaches the system below the course's library"),
    (r"^std::(__cxx11::)?basic_(i|o)?fstream|^std::basic_filebuf|^std::(__fs::)?filesystem::",
     "opens files through the C++ library"),
    (r"^testing::|^sgpt::testing::|^sgpt_grade", "touches the test framework"),
]
SYSCALL_INSN = re.compile(r"\t(syscall|sysenter|int\s+\$0x80)\b")


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace").stdout


def undefined_symbols(archive):
    out = _run(["nm", "-C", "--undefined-only", str(archive)])
    syms = set()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("U ") or line.startswith("w "):
            syms.add(line[2:].strip())
    return syms


def without_return_type(name):
    """A template instantiation demangles with its return type first ('double sgpt::f<int>(int)');
    returns the name without it ('sgpt::f<int>(int)'), or the name itself when there is none."""
    text = name.replace("(anonymous namespace)", "{anonymous}")
    depth, space = 0, -1
    for i, ch in enumerate(text):
        if ch in "<(" and not text[:i].endswith("operator"):
            if ch == "(" and depth == 0:
                break
            depth += 1
        elif ch in ">)" and depth > 0 and not text[:i].endswith("operator"):
            depth -= 1
        elif ch == " " and depth == 0:
            space = i
    return text[space + 1:].replace("{anonymous}", "(anonymous namespace)") if space >= 0 else name


def used_symbols(objects):
    """What the objects call: their undefined symbols and their weak definitions (inline functions
    and templates, which unoptimised objects keep out of line), demangled."""
    syms = set()
    for obj in objects:
        for line in _run(["nm", "-C", str(obj)]).splitlines():
            m = re.match(r"\s*(?:[0-9a-f]+ )?([A-Za-z]) (.+)$", line)
            if m and m.group(1) in "UwWVu":
                syms.add(m.group(2).strip())
                syms.add(without_return_type(m.group(2).strip()))
    return syms


def check(archive, lesson_forbidden, objects=None):
    """Returns (sandbox_problems, task_problems): lists of messages; task_problems are (task, message).
    objects: the student's files compiled without optimisation (the lessonNN_lint objects), or None."""
    syms = undefined_symbols(archive)
    used = used_symbols(objects) if objects else syms
    bare = {s.split("(")[0] for s in syms} | {s.split("@")[0] for s in syms}
    sandbox = []
    for rx, why in SANDBOX_SYMBOLS:
        r = re.compile(rx)
        hits = sorted(s for s in bare if r.search(s))
        if hits:
            sandbox.append(f"the submission calls {', '.join(hits[:4])} ({why}): graded code may not")
    # A header-only test helper (sgpt::testing::data_parallel_step) is inlined away in the library.
    framework = re.compile(SANDBOX_SYMBOLS[-1][0])
    hits = sorted({s.split("(")[0] for s in used} - bare, key=str)
    hits = [s for s in hits if framework.search(s)]
    if hits:
        sandbox.append(f"the submission calls {', '.join(hits[:4])} ({SANDBOX_SYMBOLS[-1][1]}): graded code may not")
    # What the objects define: an extern "C" definition (or one in the library's or GoogleTest's
    # namespaces) would replace, inside the test binary, a function that the tests, the library or
    # the grader's reporter call (memcpy, write, testing::TestResult::Passed...).
    raw = _run(["nm", "--defined-only", "--extern-only", str(archive)]).splitlines()
    dem = _run(["nm", "-C", "--defined-only", "--extern-only", str(archive)]).splitlines()
    for r_line, d_line in zip(raw, dem):
        rp, dp = r_line.split(maxsplit=2), d_line.split(maxsplit=2)
        if len(rp) < 3 or len(dp) < 3:
            continue
        kind, mangled, name = rp[1], rp[2], dp[2]
        strong = kind in "TDBRGSC"
        if not mangled.startswith("_Z") and re.fullmatch(r"[A-Za-z_]\w*", mangled):  # not DW.ref.* etc.
            sandbox.append(f"the submission defines the C symbol {mangled}: graded code may define only C++ "
                           "functions (in its lesson's namespace)")
        elif re.match(r"(testing::|sgpt::testing::|sgpt_grade)", name) or (
                strong and re.match(r"(std::|sgpt::(?!lesson))", name)):
            sandbox.append(f"the submission defines {name}, which belongs to the library, the standard library or "
                           "GoogleTest: graded code may not replace it")
    # IFUNC symbols ('i') and sections that run before the grader's reporter.
    for line in _run(["nm", "-C", "--defined-only", str(archive)]).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "i":
            sandbox.append(f"the submission defines an IFUNC resolver ({parts[2]}): graded code may not")
    heads = _run(["objdump", "-h", str(archive)])
    for sec in (".preinit_array", ".ctors", ".init"):
        if re.search(r"\s" + re.escape(sec) + r"(\s|$)", heads):
            sandbox.append(f"the submission's objects hold a {sec} section: graded code may not run before main "
                           "that way")
    dis = _run(["objdump", "-d", "--no-show-raw-insn", str(archive)])
    m = SYSCALL_INSN.search(dis)
    if m:
        sandbox.append(f"the submission's machine code holds a '{m.group(1)}' instruction: graded code may not "
                       "make system calls itself")
    sandbox = list(dict.fromkeys(sandbox))
    tasks = []
    for f in lesson_forbidden:
        r = re.compile(f["symbol"])
        scope = used
        if f.get("files"):  # only what these student files call (needs the lint objects)
            objs = [o for o in objects or [] if pathlib.Path(o).name.removesuffix(".o") in f["files"]]
            scope = used_symbols(objs) if objs else set()
        hits = sorted(s for s in scope if r.search(s))
        if hits:
            for k in f.get("tasks", [f.get("task", 0)]):
                tasks.append((int(k), f"the submission calls {hits[0]}: "
                                      f"{f.get('why', 'the task asks you to write this yourself')}"))
    return sandbox, tasks
