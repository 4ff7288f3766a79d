#!/usr/bin/env python3
"""Check that the lesson index agrees with the tree.

- lessons/README.md has exactly one index row per lessons/NN_slug/ folder, in order:
      | 01 | [anatomy of a training step](01_training_step/README.md) | ... |
- every lesson folder has README.md and CMakeLists.txt, and an entry in grading/points.json
  (and every entry there has a folder);
- the task table of each lesson README (rows "| task k | title | P |") gives each task the points
  that points.json gives it (public and hidden tests together);
- every lesson has a slide deck slides/NN_slug.md.
Exit 1 with one line per problem.
"""
import argparse
import json
import pathlib
import re
import sys

ROW = re.compile(r"^\|\s*(\d\d)\s*\|\s*\[([^\]]+)\]\((\d\d_[a-z0-9_]+)/(?:README\.md)?\)\s*\|")
TASK = re.compile(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|\s*(\d+)\s*\|\s*$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[2])
    root = ap.parse_args().root.resolve()
    problems = []
    folders = sorted(p.name for p in (root / "lessons").iterdir() if p.is_dir() and re.match(r"^\d\d_", p.name))
    index = (root / "lessons" / "README.md")
    rows = []
    if not index.exists():
        problems.append("lessons/README.md is missing")
    else:
        for n, line in enumerate(index.read_text().splitlines(), 1):
            m = ROW.match(line)
            if m:
                rows.append((m[1], m[3], n))
                if not m[3].startswith(m[1] + "_"):
                    problems.append(f"lessons/README.md:{n}: number {m[1]} does not match folder {m[3]}")
    listed = [r[1] for r in rows]
    for f in folders:
        if f not in listed:
            problems.append(f"lessons/{f}/ has no row in lessons/README.md")
    for num, f, n in rows:
        if f not in folders:
            problems.append(f"lessons/README.md:{n}: lists {f}, which is not a folder in lessons/")
    if len(set(listed)) != len(listed):
        problems.append("lessons/README.md lists a lesson twice")
    if listed != sorted(listed):
        problems.append("lessons/README.md: rows are not in lesson order")
    nums = [f[:2] for f in folders]
    if len(set(nums)) != len(nums):
        problems.append("two lesson folders share a number")

    points = json.loads((root / "grading" / "points.json").read_text())
    declared = {f"{l['number']}_{l['slug']}": l for l in points["lessons"]}
    for f in folders:
        for need in ("README.md", "CMakeLists.txt"):
            if not (root / "lessons" / f / need).exists():
                problems.append(f"lessons/{f}/{need} is missing")
        if not (root / "slides" / f"{f}.md").exists():
            problems.append(f"slides/{f}.md is missing")
        if f not in declared:
            problems.append(f"lessons/{f}/ is not declared in grading/points.json")
            continue
        lesson = declared[f]
        want = {}
        for t in lesson["tests"]:
            if t["points"]:
                want[t["task"]] = want.get(t["task"], 0) + t["points"]
        readme = root / "lessons" / f / "README.md"
        if readme.exists():
            got = {}
            for line in readme.read_text().splitlines():
                m = TASK.match(line)
                if m:
                    got[int(m[1])] = int(m[3])
            if got != want:
                problems.append(f"lessons/{f}/README.md: task points {dict(sorted(got.items()))} != "
                                f"grading/points.json {dict(sorted(want.items()))}")
    for f in declared:
        if f not in folders:
            problems.append(f"grading/points.json declares lesson {f}, which has no folder in lessons/")
    for p in problems:
        print("check_index:", p)
    if not problems:
        print(f"check_index: {len(folders)} lessons; index, folders, points and slides agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
