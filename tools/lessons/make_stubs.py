#!/usr/bin/env python3
"""Generate the student files in lessons/ from the reference files in solutions/.

A solution file marks each task body:

    // TODO(lesson 02, task 1): accumulate the micro-batch gradients
    // (optional) comment lines right after the marker are kept in the stub: the contract only
    ... the reference body ...
    // END TODO

and the stub keeps the marker and its comment lines, says where the hints are, and replaces the
body with

    // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
    SGPT_TODO(2, 1, "accumulate the micro-batch gradients");

Hints (the algorithm) never live in a stub: they are in the lesson README, in three levels folded
in <details>, so each student chooses how much help to take. A `// HINT:` line in a solution is an
error.

Lines between `// BEGIN SOLUTION ONLY` and `// END SOLUTION ONLY` are dropped from the stub
(helpers that only the reference needs). Everything else is copied as it is.

    make_stubs.py            write lessons/NN_slug/<file> for every solutions/NN_slug/<file>
    make_stubs.py --check    write nothing; exit 1 and show a diff if a stub differs
    make_stubs.py --bodies   print the solution body lines (the release check greps for them)
"""
import argparse
import difflib
import json
import pathlib
import re
import sys

MARK = re.compile(r"^(?P<indent>\s*)// TODO\(lesson (?P<lesson>\d+), task (?P<task>\d+)\):\s*(?P<title>.+?)\s*$")
END = re.compile(r"^\s*// END TODO\s*$")
SOL_BEGIN = re.compile(r"^\s*// BEGIN SOLUTION ONLY\s*$")
HINT = re.compile(r"^\s*// HINT")
SOL_END = re.compile(r"^\s*// END SOLUTION ONLY\s*$")


class MarkerError(Exception):
    pass


def parse(text, name):
    """Returns (stub text, list of task bodies as line lists, list of (lesson, task, title))."""
    out, bodies, tasks = [], [], []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if SOL_BEGIN.match(line):
            j = i + 1
            while j < len(lines) and not SOL_END.match(lines[j]):
                j += 1
            if j == len(lines):
                raise MarkerError(f"{name}:{i + 1}: BEGIN SOLUTION ONLY without END SOLUTION ONLY")
            bodies.append(lines[i + 1:j])
            i = j + 1
            continue
        m = MARK.match(line)
        if not m:
            if END.match(line):
                raise MarkerError(f"{name}:{i + 1}: END TODO without a TODO marker")
            out.append(line)
            i += 1
            continue
        indent, lesson, task, title = m["indent"], int(m["lesson"]), int(m["task"]), m["title"]
        if '"' in title or "\\" in title:
            raise MarkerError(f"{name}:{i + 1}: a task title may not hold quotes or backslashes")
        out.append(line)
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith("//") and not END.match(lines[j]) \
                and not MARK.match(lines[j]):
            if HINT.match(lines[j]):
                raise MarkerError(f"{name}:{j + 1}: hints belong in the lesson README (folded <details>), "
                                  f"not in the stub")
            out.append(lines[j])  # contract comments stay
            j += 1
        out.append(f'{indent}// Contract: the comment of this function in the header. Hints: README.md, '
                   f'section "Hints", task {task}.\n')
        k = j
        while k < len(lines) and not END.match(lines[k]):
            if MARK.match(lines[k]):
                raise MarkerError(f"{name}:{k + 1}: TODO marker inside the task that starts at line {i + 1}")
            k += 1
        if k == len(lines):
            raise MarkerError(f"{name}:{i + 1}: TODO marker without // END TODO")
        bodies.append(lines[j:k])
        out.append(f'{indent}SGPT_TODO({lesson}, {task}, "{title}");\n')
        tasks.append((lesson, task, title))
        i = k + 1
    return "".join(out), bodies, tasks


def lesson_files(root):
    """Yields (solution path, stub path) for every file under solutions/NN_slug/."""
    sol = root / "solutions"
    for d in sorted(p for p in sol.iterdir() if p.is_dir() and re.match(r"^\d\d_", p.name)):
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            yield f, root / "lessons" / d.name / f.relative_to(d)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=pathlib.Path(__file__).resolve().parents[2], type=pathlib.Path)
    ap.add_argument("--check", action="store_true", help="fail when a committed stub differs")
    ap.add_argument("--bodies", action="store_true", help="print the solution body lines")
    a = ap.parse_args()
    root = a.root.resolve()
    if not (root / "solutions").is_dir():
        print(f"make_stubs: {root}/solutions does not exist (a student release has no solutions)", file=sys.stderr)
        return 2
    bad = 0
    all_bodies = []
    for sol, stub in lesson_files(root):
        rel = sol.relative_to(root)
        try:
            text, bodies, tasks = parse(sol.read_text(), str(rel))
        except MarkerError as e:
            print(f"make_stubs: {e}", file=sys.stderr)
            return 2
        lesson_no = int(sol.parent.name[:2]) if sol.parent.parent.name == "solutions" else None
        for (lesson, task, title) in tasks:
            if lesson_no is not None and lesson != lesson_no:
                print(f"make_stubs: {rel}: marker says lesson {lesson} inside lesson folder {sol.parent.name}",
                      file=sys.stderr)
                return 2
        all_bodies.extend(bodies)
        if a.bodies:
            continue
        old = stub.read_text() if stub.exists() else None
        if old == text:
            continue
        if a.check:
            bad += 1
            print(f"make_stubs --check: {stub.relative_to(root)} differs from what {rel} generates:")
            sys.stdout.writelines(difflib.unified_diff((old or "").splitlines(True), text.splitlines(True),
                                                       f"committed/{stub.relative_to(root)}",
                                                       f"generated/{stub.relative_to(root)}"))
        else:
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text(text)
            print(f"make_stubs: wrote {stub.relative_to(root)}")
    if a.bodies:
        print(json.dumps(["".join(b) for b in all_bodies], indent=1))
        return 0
    if a.check:
        if bad:
            print(f"make_stubs --check: {bad} stub(s) out of date; run python3 tools/lessons/make_stubs.py")
            return 1
        print("make_stubs --check: every stub matches its solution")
    return 0


if __name__ == "__main__":
    sys.exit(main())
