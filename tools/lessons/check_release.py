#!/usr/bin/env python3
"""Check an exported student release: no solutions/, no hidden tests, no hidden points, no copy of a
solution body anywhere (most of the code lines of one task body -- the text between TODO and END
TODO markers in solutions/ -- in one file, whatever its folder: a library "version" of a task in
common/ is an answer too), and no line of any solution body in any file (lines that the given code
itself holds -- the stubs outside their task bodies, common/, tools/, tests/ -- are not solution
text and are skipped by this line check, not by the body check).

    check_release.py --root . --release build/release/scalegpt-student
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys

TEXT = (".cpp", ".hpp", ".h", ".cu", ".cuh", ".md", ".txt", ".py", ".json", ".cmake")


def code_lines(text):
    """The specific code lines of a text: whitespace-normalised, no comments, at least 16 characters."""
    out = []
    for line in text.splitlines():
        s = re.sub(r"\s+", " ", line.split("//")[0]).strip()
        if len(s) >= 16:
            out.append(s)
    return out


# Files that hold a solution body on purpose, each with the reason; the check warns about them and
# fails on any other. Keep this empty where you can: a library copy of a task is its answer.
KNOWN_COPIES = {
    "common/core/half.hpp": "the library's own bf16/fp16 conversions (kernels, Tensor::cast) are lesson 05 "
                            "tasks 1-2; to be replaced by a formulation that is not the lesson's answer",
}


def body_copies(bodies, files, given):
    """(file, first line of the body, lines found, lines) for every file that holds at least 3 and
    at least 60% of the specific code lines of one solution body. Lines of `given` (the stubs' own
    code outside their task bodies) are not solution text and do not count."""
    found = []
    texts = {f: set(code_lines(t)) for f, t in files.items()}
    for b in bodies:
        want = sorted(set(code_lines(b)) - given)
        if len(want) < 3:
            continue
        for f, have in texts.items():
            hits = sum(1 for x in want if x in have)
            if hits >= 3 and hits >= 0.6 * len(want):
                found.append((f, code_lines(b)[0], hits, len(want)))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[2])
    ap.add_argument("--release", type=pathlib.Path, required=True)
    a = ap.parse_args()
    root, rel = a.root.resolve(), a.release.resolve()
    problems = []
    for p in ("solutions", "grading/hidden", "grading/gradescope", "grading/redteam", "tools/lessons/mutants"):
        if (rel / p).exists():
            problems.append(f"{p}/ is in the release")
    pts = json.loads((rel / "grading" / "points.json").read_text())
    if any(t["binary"] == "hidden" for l in pts["lessons"] for t in l["tests"]):
        problems.append("grading/points.json in the release names hidden tests")
    bodies = json.loads(subprocess.run([sys.executable, str(root / "tools/lessons/make_stubs.py"), "--bodies",
                                        "--root", str(root)], check=True, capture_output=True, text=True).stdout)
    # Lines that carry solution content: not comments, not braces, long enough to be specific.
    lines = set()
    for b in bodies:
        for line in b.splitlines():
            s = line.strip()
            if len(s) >= 24 and not s.startswith("//"):
                lines.add(s)
    # Lines that the given code shares with the solution are not solution text: the stubs' own
    # (generated) text, and the library, tools and tests of the course.
    shared = []
    for f in rel.rglob("*"):
        r = f.relative_to(rel).as_posix()
        if f.is_file() and (r.startswith(("common/", "tools/", "tests/")) or
                            (r.startswith("lessons/") and f.suffix in (".cpp", ".hpp") and "/tests/" not in r)):
            shared.append(f.read_text(errors="replace"))
    lines = {x for x in lines if not any(x in t for t in shared)}
    texts = {}
    for f in rel.rglob("*"):
        if f.is_file() and f.suffix in TEXT:
            texts[f] = f.read_text(errors="replace")
    given = set()
    for f, t in texts.items():
        r = f.relative_to(rel).as_posix()
        if r.startswith("lessons/") and f.suffix in (".cpp", ".hpp") and "/tests/" not in r:
            given |= set(code_lines(t))
    for f, first, hits, n in body_copies(bodies, texts, given):
        if f.relative_to(rel).as_posix() in KNOWN_COPIES:
            print(f"check_release: warning: {f.relative_to(rel)} holds a solution body ({hits} of its {n} code "
                  f"lines; it begins '{first}'): {KNOWN_COPIES[f.relative_to(rel).as_posix()]}")
            continue
        problems.append(f"{f.relative_to(rel)} holds a solution body ({hits} of its {n} code lines; it begins "
                        f"'{first}'): a lesson that needs another lesson's answer links its reference "
                        f"(points.json builds_on), never a copy")
    for s in sorted(lines):
        for f, t in texts.items():
            if s in t:
                problems.append(f"solution line found in {f.relative_to(rel)}: {s}")
    for p in problems:
        print("check_release:", p)
    if not problems:
        print(f"check_release: {rel}: no solutions, no hidden tests, no copy of any of {len(bodies)} solution "
              f"bodies, none of {len(lines)} solution lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
