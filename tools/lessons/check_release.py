#!/usr/bin/env python3
"""Check an exported student release: no solutions/, no hidden tests, no hidden points, and no line
of any solution body (the text between TODO and END TODO markers in solutions/) in any file
(lines that the given code itself holds -- the stubs outside their task bodies, common/, tools/,
tests/ -- are not solution text and are skipped).

    check_release.py --root . --release build/release/scalegpt-student
"""
import argparse
import json
import pathlib
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[2])
    ap.add_argument("--release", type=pathlib.Path, required=True)
    a = ap.parse_args()
    root, rel = a.root.resolve(), a.release.resolve()
    problems = []
    for p in ("solutions", "grading/hidden", "grading/gradescope", "grading/redteam"):
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
        if f.is_file() and f.suffix in (".cpp", ".hpp", ".h", ".cu", ".cuh", ".md", ".txt", ".py", ".json", ".cmake"):
            texts[f] = f.read_text(errors="replace")
    for s in sorted(lines):
        for f, t in texts.items():
            if s in t:
                problems.append(f"solution line found in {f.relative_to(rel)}: {s}")
    for p in problems:
        print("check_release:", p)
    if not problems:
        print(f"check_release: {rel}: no solutions, no hidden tests, none of {len(lines)} solution lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
