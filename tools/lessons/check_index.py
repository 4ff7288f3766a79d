#!/usr/bin/env python3
"""Check that the lesson index agrees with the tree.

- lessons/README.md has exactly one index row per lessons/NN_slug/ folder, in order:
      | 01 | [anatomy of a training step](01_training_step/README.md) | ... |
- every lesson folder has README.md and CMakeLists.txt, and an entry in grading/points.json
  (and every entry there has a folder);
- the task table of each lesson README (rows "| k | what | public | hidden | points |") gives each
  task the points that points.json gives it: public tests, hidden tests, and their sum. In the
  student release (points.json holds no hidden tests and grading/hidden/ is absent) the hidden
  column is checked against the lesson's "hidden_points" in points.json when the export wrote one,
  and is otherwise taken as the README says (the instructor tree checked it);
- a lesson with hidden points says so in its README (a "Hidden tests" section);
- lessons/README.md lists each planned lesson (no folder yet) as a row without a link, and no
  lesson both as a folder row and as a planned row;
- every lesson has a slide deck slides/NN_slug.md.
Exit 1 with one line per problem.

    check_index.py           check
    check_index.py --fix     rewrite the points columns of the README task tables from points.json
"""
import argparse
import json
import pathlib
import re
import sys

ROW = re.compile(r"^\|\s*(\d\d)\s*\|\s*\[([^\]]+)\]\((\d\d_[a-z0-9_]+)/(?:README\.md)?\)\s*\|")
PLANNED = re.compile(r"^\|\s*(\d\d)\s*\|\s*([^|\[]+?)\s*\|")
TASK = re.compile(r"^(\|\s*(\d+)\s*\|\s*[^|]+?\s*\|)\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*$")
OLD_TASK = re.compile(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|\s*(\d+)\s*\|\s*$")


def task_points(lesson):
    """{task: (public, hidden)} from a points.json lesson entry (0-point tests left out)."""
    out = {}
    for t in lesson["tests"]:
        if t["points"]:
            pub, hid = out.get(t["task"], (0, 0))
            if t["binary"] == "hidden":
                hid += t["points"]
            else:
                pub += t["points"]
            out[t["task"]] = (pub, hid)
    for k, v in lesson.get("hidden_points", {}).items():  # a release's summary of stripped tests
        pub, _ = out.get(int(k), (0, 0))
        out[int(k)] = (pub, v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[2])
    ap.add_argument("--fix", action="store_true", help="rewrite README task-table points from points.json")
    a = ap.parse_args()
    root = a.root.resolve()
    instructor = (root / "grading" / "hidden").is_dir()
    problems = []
    folders = sorted(p.name for p in (root / "lessons").iterdir() if p.is_dir() and re.match(r"^\d\d_", p.name))
    index = (root / "lessons" / "README.md")
    rows, planned = [], []
    if not index.exists():
        problems.append("lessons/README.md is missing")
    else:
        for n, line in enumerate(index.read_text().splitlines(), 1):
            m = ROW.match(line)
            if m:
                rows.append((m[1], m[3], n))
                if not m[3].startswith(m[1] + "_"):
                    problems.append(f"lessons/README.md:{n}: number {m[1]} does not match folder {m[3]}")
            else:
                pm = PLANNED.match(line)
                if pm and not pm[2].startswith("-") and pm[1] != "#" and pm[2] != "lesson":
                    planned.append((pm[1], n))
    for num, n in planned:
        if any(f.startswith(num + "_") for f in folders):
            problems.append(f"lessons/README.md:{n}: lesson {num} has a folder now: replace its planned row "
                            f"with a row that links its README")
        if any(r[0] == num for r in rows):
            problems.append(f"lessons/README.md:{n}: lesson {num} is listed twice (planned and linked)")
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
        want = task_points(lesson)
        has_hidden_info = instructor or any(t["binary"] == "hidden" for t in lesson["tests"]) \
            or "hidden_points" in lesson
        readme = root / "lessons" / f / "README.md"
        if not readme.exists():
            continue
        text = readme.read_text()
        got, lines, changed = {}, text.splitlines(keepends=True), False
        for i, line in enumerate(lines):
            if OLD_TASK.match(line.rstrip("\n")):
                problems.append(f"lessons/{f}/README.md: task row '{line.strip()}' has one points column; "
                                f"use | task | what | public | hidden | points |")
            m = TASK.match(line.rstrip("\n"))
            if not m:
                continue
            k, pub, hid, tot = int(m[2]), int(m[3]), int(m[4]), int(m[5])
            got[k] = (pub, hid, tot)
            if a.fix and k in want:
                wp, wh = want[k]
                if not has_hidden_info:
                    wh = hid
                new = f"{m[1]} {wp} | {wh} | {wp + wh} |\n"
                if new != line:
                    lines[i], changed = new, True
        if a.fix and changed:
            readme.write_text("".join(lines))
            print(f"check_index --fix: rewrote the task table of lessons/{f}/README.md")
            continue
        for k in sorted(set(got) | set(want)):
            if k not in got:
                problems.append(f"lessons/{f}/README.md: task {k} has points in grading/points.json "
                                f"but no row in the task table")
                continue
            pub, hid, tot = got[k]
            if pub + hid != tot:
                problems.append(f"lessons/{f}/README.md: task {k}: public {pub} + hidden {hid} != points {tot}")
            wp, wh = want.get(k, (0, 0))
            if pub != wp:
                problems.append(f"lessons/{f}/README.md: task {k}: {pub} public points, grading/points.json "
                                f"gives {wp}")
            if has_hidden_info and hid != wh:
                problems.append(f"lessons/{f}/README.md: task {k}: {hid} hidden points, grading/points.json "
                                f"gives {wh}")
        if any(h for _, h, _ in got.values()) and "hidden tests" not in text.lower():
            problems.append(f"lessons/{f}/README.md: hidden tests carry points but the README does not say so "
                            f"(add a 'Hidden tests' section)")
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
