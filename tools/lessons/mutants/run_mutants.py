#!/usr/bin/env python3
"""Prove that the graded tests of lessons 01-12 catch realistic wrong solutions.

Each mutant in mutants.json is a reference file from solutions/ with one mistake put in (text
edits that must each match exactly once). For each mutant the script writes the mutated file into
a staging copy of solutions/, rebuilds that lesson's public and hidden test binaries (incremental:
one file changes), runs the lesson's tests with ctest (multi-rank tests under mpirun, as `make
test` does) and reads which tests failed. A mutant is *caught* when at least one test with points
in grading/points.json fails; a mutant that passes every graded test is a hole in the tests.

    run_mutants.py                      every mutant (about an hour on 2 busy cores)
    run_mutants.py --lessons 02 04      only these lessons
    run_mutants.py --list               print the mutants
    run_mutants.py --only 'swapped'     only the mutants whose mistake contains this text
                                        (repeat --only: those that contain any of the texts)
    run_mutants.py --report FILE        also write the results as a Markdown table

Only the lesson's own tests run (ctest names lessonNN.* and lessonNN_*): other tests that carry
the lesson-NN label (the trainer's) need targets that this script does not build.

Exit 1 if a mutant is not caught, or if the unmutated solutions fail a test. Build folder:
build/mutants (reused by the next run).
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def graded_names(points, lesson):
    """GoogleTest names (Suite.Test) of the tests of `lesson` that carry points."""
    for l in points["lessons"]:
        if f"{l['number']}_{l['slug']}" == lesson:
            return {t["name"] for t in l["tests"] if t["points"] > 0}
    raise SystemExit(f"run_mutants: {lesson} is not in grading/points.json")


def run_lesson_tests(bdir, number, junit):
    """Runs ctest -L lesson-NN; returns the set of failed ctest names (and the run's seconds)."""
    t0 = time.time()
    if junit.exists():
        junit.unlink()
    subprocess.run(["ctest", "--test-dir", str(bdir), "-L", f"^lesson-{number}$", "-R", f"^lesson{number}[._]",
                    "-j", "2", "--timeout", "120", "--test-output-size-failed", "100000000",
                    "--output-junit", str(junit)], capture_output=True, text=True)
    failed = {}  # ctest name -> its output (gtest prints "[  FAILED  ] Suite.Test" for each failed test)
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            if case.get("status") not in ("run", "passed") or case.find("failure") is not None:
                failed[case.get("name")] = "\n".join((ch.text or "") + " " + " ".join(ch.attrib.values())
                                                      for ch in case.iter())
    return failed, time.time() - t0


def graded_failure(failed, graded, number):
    """The graded tests among the failed ctest names. A per-test ctest name is lessonNN.Suite.Test
    or lessonNN.hidden.Suite.Test; a multi-rank binary (lessonNN_tests.npK) runs every test of the
    binary, all of them graded but the 0-point ones, which test given code only."""
    hits = []
    for name in sorted(failed):
        m = re.match(rf"^lesson{number}\.(?:hidden\.)?(\w+\.\w+)$", name)
        if m and m[1] in graded:
            hits.append(m[1])
        elif re.match(rf"^lesson{number}_(hidden_)?tests\.np\d+$", name):
            # A multi-rank binary: the graded tests its output names as failed; a binary that ended
            # without naming one (a crash, an abort, the watchdog or ctest's timeout) counts whole.
            out = re.sub(r"\[NON-XML-CHAR-0x1B\]\[[0-9;]*m|\x1b\[[0-9;]*m", "", failed[name])
            named = set(re.findall(r"\[  FAILED  \] (\w+\.\w+)", out))
            if named:
                hits += [f"{t} ({name.split('.')[-1]})" for t in sorted(named & graded)]
            else:
                hits.append(f"{name} (no test named: crash, abort or timeout)")
    return list(dict.fromkeys(hits))


def collapse(hits):
    """'A (np1), A (np2), B' -> 'A (np1, np2), B': one entry per test, its rank counts together."""
    order, ranks = [], {}
    for h in (x.strip() for x in hits.split(", ") if x.strip()):
        m = re.match(r"^(\S+) \((np\d+)\)$", h)
        name, rk = (m[1], m[2]) if m else (h, None)
        if name not in ranks:
            order.append(name)
            ranks[name] = []
        if rk:
            ranks[name].append(rk)
    return ", ".join(f"{n} ({', '.join(ranks[n])})" if ranks[n] else n for n in order).replace("|", "/")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lessons", nargs="*", help="only these lesson numbers, e.g. 01 03")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--only", action="append",
                    help="only the mutants whose mistake contains this text (repeatable: any of them)")
    ap.add_argument("--report", type=pathlib.Path, help="write the results as a Markdown table here")
    ap.add_argument("--build-dir", type=pathlib.Path, default=ROOT / "build" / "mutants")
    a = ap.parse_args()
    mutants = json.loads((HERE / "mutants.json").read_text())["mutants"]
    if a.lessons:
        mutants = [m for m in mutants if m["lesson"][:2] in a.lessons]
    if a.only:
        mutants = [m for m in mutants if any(t in m["mistake"] for t in a.only)]
    if a.list:
        for m in mutants:
            print(f"{m['lesson']}/{m['file']}: {m['mistake']}")
        return 0
    points = json.loads((ROOT / "grading" / "points.json").read_text())
    bdir = a.build_dir.resolve()
    stage = bdir / "submission"
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(ROOT / "solutions", stage)
    for f in stage.rglob("*"):  # new mtimes: a previous run's mutated objects must be rebuilt
        if f.is_file():
            f.touch()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), GTEST_COLOR="no")
    os.environ.update(env)
    if not (bdir / "build.ninja").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(bdir), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                        "-DSCALEGPT_CUDA=OFF", f"-DSCALEGPT_LESSONS_FROM={stage}",
                        f"-DSCALEGPT_HIDDEN_TESTS_DIR={ROOT / 'grading' / 'hidden'}"], check=True,
                       stdout=subprocess.DEVNULL)
    lessons = sorted({m["lesson"] for m in mutants})
    bad = 0
    rows = []  # (lesson, mistake, verdict, the graded tests that failed)
    for lesson in lessons:
        number = lesson[:2]
        graded = graded_names(points, lesson)
        targets = [f"lesson{number}_tests", f"lesson{number}_hidden_tests"]
        subprocess.run(["cmake", "--build", str(bdir), "-j", "2", "--target", *targets], check=True,
                       stdout=subprocess.DEVNULL)
        failed, secs = run_lesson_tests(bdir, number, bdir / "junit.xml")
        if failed:
            print(f"run_mutants: lesson {number}: the reference solution fails {sorted(failed)}")
            bad += 1
            continue
        print(f"lesson {number}: the reference passes every test ({secs:.0f} s)")
        for m in (m for m in mutants if m["lesson"] == lesson):
            src = ROOT / "solutions" / lesson / m["file"]
            text = src.read_text()
            for old, new in m["edits"]:
                if text.count(old) != 1:
                    print(f"  STALE   {m['mistake']}: edit not found exactly once in {src.relative_to(ROOT)}: {old!r}")
                    rows.append((lesson, m["mistake"], "STALE", ""))
                    bad += 1
                    break
                text = text.replace(old, new)
            else:
                dst = stage / lesson / m["file"]
                dst.write_text(text)
                b = subprocess.run(["cmake", "--build", str(bdir), "-j", "2", "--target", *targets],
                                   capture_output=True, text=True)
                if b.returncode != 0:
                    print(f"  CAUGHT  {m['mistake']}: does not compile")
                    rows.append((lesson, m["mistake"], "caught", "does not compile"))
                else:
                    failed, secs = run_lesson_tests(bdir, number, bdir / "junit.xml")
                    hits = graded_failure(failed, graded, number)
                    if hits:
                        print(f"  CAUGHT  {m['mistake']} ({secs:.0f} s): {', '.join(hits[:4])}"
                              f"{' ...' if len(hits) > 4 else ''}")
                        rows.append((lesson, m["mistake"], "caught", ", ".join(hits)))
                    else:
                        bad += 1
                        print(f"  MISSED  {m['mistake']}: every graded test passes")
                        rows.append((lesson, m["mistake"], "MISSED", ""))
                dst.write_text(src.read_text())  # restored, with a new mtime: the build sees the change
    if a.report:
        lines = ["| lesson | mistake | verdict | graded tests that fail |", "|---|---|---|---|"]
        lines += [f"| {l[:2]} | {mi} | {v} | {collapse(h)} |" for l, mi, v, h in rows]
        a.report.write_text("\n".join(lines) + "\n")
    print(f"run_mutants: {len(mutants)} mutants, {bad} not caught" if bad else
          f"run_mutants: all {len(mutants)} mutants caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
