#!/usr/bin/env python3
"""Run the Gradescope autograder the way Gradescope does, in a temporary autograder root, and check
what it writes against Gradescope's results.json format.

    check_gradescope.py [--lesson 04] [--out build/ci-gradescope] [--skip-setup]

Exports autograder-NN.zip (tools/lessons/export_release.py), unpacks it into <root>/source, copies
run_autograder to <root>/run_autograder, runs setup.sh (as root: apt-get, the sgpt-grader user, the
ccache warm-up), then run_autograder once per submission, each in a fresh <root>/submission and
<root>/results, with SGPT_AUTOGRADER_ROOT=<root> (Gradescope's root is /autograder):

  reference    the lesson's solution, zipped from the repository root as a student uploads it and
               left unextracted (run_autograder grades a lone archive)         -> full marks
  stubs        the release's stubs, extracted as Gradescope extracts a zip        -> zero, "not implemented"
  compile      the solution with a syntax error, a flat upload                    -> zero, the compiler's error
  empty        an empty submission                                                -> zero, "not in the submission"

Every results.json must follow Gradescope's format (see validate()). Needs root (the grader's
sandbox and setup.sh do); takes a few minutes on 2 cores. Exit 1 on the first problem.
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
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
            "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
             "tags", "visibility", "extra_data"}


def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(res, lesson, expect, stdout):
    """Problems of one results.json (a list of strings; empty: fine). lesson: its points.json entry."""
    bad = []
    if not isinstance(res, dict):
        return ["results.json is not a JSON object"]
    bad += [f"unknown top-level key {k!r}" for k in sorted(set(res) - TOP_KEYS)]
    tests = res.get("tests")
    if not isinstance(tests, list) or not tests:
        return bad + ["no tests[]"]
    if "score" in res and not number(res["score"]):
        bad.append("top-level score is not a number")
    if "execution_time" in res and not isinstance(res["execution_time"], int):
        bad.append("execution_time is not a whole number of seconds")
    for k in ("visibility", "stdout_visibility"):
        if k in res and res[k] not in VISIBILITY:
            bad.append(f"{k} {res[k]!r} is not one of {sorted(VISIBILITY)}")
    if not isinstance(res.get("output", ""), str):
        bad.append("top-level output is not a string")
    names, numbers = set(), set()
    for t in tests:
        where = f"test {t.get('name', '?')!r}"
        bad += [f"{where}: unknown key {k!r}" for k in sorted(set(t) - TEST_KEYS)]
        for k in ("score", "max_score"):
            if not number(t.get(k)):
                bad.append(f"{where}: {k} missing or not a number")
        if number(t.get("score")) and number(t.get("max_score")) and not 0 <= t["score"] <= t["max_score"]:
            bad.append(f"{where}: score {t['score']} outside 0..{t['max_score']}")
        if t.get("status", "passed") not in ("passed", "failed"):
            bad.append(f"{where}: status {t['status']!r}")
        if t.get("visibility", "visible") not in VISIBILITY:
            bad.append(f"{where}: visibility {t['visibility']!r}")
        for k in ("name", "number", "output"):
            if not isinstance(t.get(k), str):
                bad.append(f"{where}: {k} missing or not a string")
        if t.get("name") in names or t.get("number") in numbers:
            bad.append(f"{where}: name or number {t.get('number')!r} used twice (ours: Gradescope orders by number)")
        names.add(t.get("name"))
        numbers.add(t.get("number"))
    if bad:
        return bad
    total, best = sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)
    if "score" in res and res["score"] != total:
        bad.append(f"top-level score {res['score']} is not the sum of the tests' scores {total}")
    graded = [t for t in lesson["tests"] if t["points"] > 0]
    if best != sum(t["points"] for t in graded) or len(tests) != len(graded):
        bad.append(f"{len(tests)} tests worth {best} points; points.json grades {len(graded)} worth "
                   f"{sum(t['points'] for t in graded)}")
    for t in graded:  # every graded test once, hidden ones shown only once the grades are published
        mine = [x for x in tests if x["name"].endswith(": " + t["name"] + (" (hidden)" if t["binary"] == "hidden" else ""))]
        want = "after_published" if t["binary"] == "hidden" else "visible"
        if len(mine) != 1:
            bad.append(f"{t['name']}: {len(mine)} entries in tests[]")
        elif mine[0].get("visibility", res.get("visibility", "visible")) != want:
            bad.append(f"{t['name']}: visibility {mine[0].get('visibility')!r}, want {want!r}")
        elif (mine[0]["status"] == "passed") != (mine[0]["score"] == mine[0]["max_score"]):
            bad.append(f"{t['name']}: status {mine[0]['status']} with {mine[0]['score']}/{mine[0]['max_score']}")
    hidden = [t["name"] for t in graded if t["binary"] == "hidden"]
    if hidden and res.get("stdout_visibility", "hidden") == "visible" and any(h in stdout for h in hidden):
        bad.append("stdout lists the hidden tests and is visible to students before the grades are published")
    if hidden and any(h in res.get("output", "") for h in hidden):
        bad.append("the top-level output (always visible) names a hidden test")
    if "sgpt-grade-" in json.dumps(res):
        bad.append("an output shows the grading folder's paths, not the student's (grade.py for_people)")
    if expect == "full" and total != best:
        bad.append(f"score {total}/{best}, want full marks: " +
                   ", ".join(t["name"] for t in tests if t["score"] < t["max_score"]))
    if expect == "zero" and total != 0:
        bad.append(f"score {total}/{best}, want 0: " + ", ".join(t["name"] for t in tests if t["score"]))
    return bad


def wait_for_other_graders(limit_s=900):
    """grade.py kills every process of sgpt-grader when it ends: two graders at once on one machine
    fail each other's tests. Waits until no other grade.py runs (ours run one at a time)."""
    t0 = time.time()
    while True:
        others = subprocess.run(["pgrep", "-f", "grading/grade.py"], capture_output=True, text=True).stdout.split()
        if not others:
            return
        if time.time() - t0 > limit_s:
            sys.exit(f"check_gradescope.py: another grade.py (pid {' '.join(others)}) has run for {limit_s} s; "
                     "two graders at once fail each other's tests")
        if time.time() - t0 < 1:
            print(f"waiting for another grade.py (pid {' '.join(others)}) to end", flush=True)
        time.sleep(5)


def run(cmd, log, env=None, cwd=None):
    with open(log, "w") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lesson", default="04")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "build" / "ci-gradescope")
    ap.add_argument("--bundle", type=pathlib.Path,
                    help="the autograder zip to test, next to its scalegpt-student/ (default: export both for --lesson); "
                         "CI passes the ones it exported")
    ap.add_argument("--skip-setup", action="store_true",
                    help="reuse the root of an earlier run (setup.sh done): only the submissions run again")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("check_gradescope.py: run as root (setup.sh and the grader's sandbox need it)")
    points = json.loads((ROOT / "grading" / "points.json").read_text())
    lesson = next((l for l in points["lessons"] if l["number"] == a.lesson), None)
    if lesson is None:
        sys.exit(f"check_gradescope.py: no lesson {a.lesson} in grading/points.json")
    d = f"{lesson['number']}_{lesson['slug']}"
    out = a.out.resolve()
    ag = out / "autograder"
    env = dict(os.environ, SGPT_AUTOGRADER_ROOT=str(ag))
    # The student release the bundle was exported with (export_release.py writes both side by side):
    # its stubs are one of the submissions.
    release = (a.bundle.resolve().parent if a.bundle else out / "release") / "scalegpt-student"
    t0 = time.time()

    def step(msg):
        print(f"[{time.time() - t0:4.0f} s] {msg}", flush=True)

    if not a.skip_setup:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        if a.bundle:
            bundle = a.bundle.resolve()
        else:
            subprocess.run([sys.executable, str(ROOT / "tools/lessons/export_release.py"), "--out", str(out / "release"),
                            "--autograder", "--lessons", a.lesson], check=True, stdout=subprocess.DEVNULL)
            bundle = out / "release" / f"autograder-{a.lesson}.zip"
        (ag / "source").mkdir(parents=True)
        # As Gradescope builds the image: the zip's contents in source/, run_autograder copied up.
        subprocess.run(["unzip", "-q", str(bundle), "-d", str(ag / "source")], check=True)
        for name in ("setup.sh", "run_autograder"):
            if not os.access(ag / "source" / name, os.X_OK):
                sys.exit(f"check_gradescope.py: {name} is not executable in {bundle.name}")
        shutil.copy2(ag / "source" / "run_autograder", ag / "run_autograder")
        step(f"{bundle.name} unpacked into {ag}; running setup.sh (log: {out / 'setup.log'})")
        wait_for_other_graders()
        if run(["bash", "./setup.sh"], out / "setup.log", env=env, cwd=ag / "source") != 0:
            print((out / "setup.log").read_text()[-3000:])
            sys.exit("check_gradescope.py: setup.sh failed")
        warm = (ag / "warmup.log").read_text()
        if not re.search(r"^Score: 0/", warm, re.M):
            print(warm[-3000:])
            sys.exit("check_gradescope.py: setup.sh's warm-up did not grade the stubs at zero")
        step("setup.sh done: packages, sgpt-grader, the stubs graded at zero to warm ccache")

    # The submissions, in a staging folder outside the root.
    subs = out / "submissions"
    shutil.rmtree(subs, ignore_errors=True)
    solution = ROOT / "solutions" / d
    zipped = subs / "reference" / "work.zip"
    zipped.parent.mkdir(parents=True)
    with zipfile.ZipFile(zipped, "w") as z:  # `zip work.zip lessons/04_x/*.cpp` from the repo root
        for f in lesson["student_files"]:
            z.write(solution / f, f"lessons/{d}/{f}")
    stubs = subs / "stubs"
    for f in lesson["student_files"]:  # an extracted zip of the stubs, as Gradescope extracts one
        (stubs / "lessons" / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(release / "lessons" / d / f, stubs / "lessons" / d / f)
    broken = subs / "compile"
    broken.mkdir()
    for i, f in enumerate(lesson["student_files"]):  # a flat upload, the first file broken
        text = (solution / f).read_text()
        (broken / f).write_text(text + ("\nint sgpt_check_gradescope_broken() { return }\n" if i == 0 else ""))
    (subs / "empty").mkdir()
    cases = [  # name, expected score, what the top-level output must say
        ("reference", "full", None),
        ("stubs", "zero", None),
        ("compile", "zero", rf"did not compile/link:\n(.|\n)*lessons/{d}/{re.escape(lesson['student_files'][0])}:\d+:\d+: "
                            r"error: [^\n]*\n"),
        ("empty", "zero", re.escape(f"{lesson['student_files'][0]} is not in the submission")),
    ]
    problems = 0
    for name, expect, says in cases:
        for p in ("submission", "results", "build"):
            shutil.rmtree(ag / p, ignore_errors=True)
        shutil.copytree(subs / name, ag / "submission")
        (ag / "results").mkdir()
        wait_for_other_graders()
        t = time.time()
        # Gradescope runs it from /autograder and keeps its output in results/stdout.
        rc = run([str(ag / "run_autograder")], ag / "results" / "stdout", env=env, cwd=ag)
        stdout = (ag / "results" / "stdout").read_text()
        shutil.copy(ag / "results" / "stdout", out / f"{name}-stdout.txt")
        rfile = ag / "results" / "results.json"
        if rc != 0 or not rfile.is_file():
            print(stdout[-3000:])
            print(f"{name}: run_autograder exited {rc}, results.json {'written' if rfile.is_file() else 'missing'}")
            problems += 1
            continue
        shutil.copy(rfile, out / f"{name}-results.json")
        res = json.loads(rfile.read_text())
        bad = validate(res, lesson, expect, stdout)
        if says and not re.search(says, res.get("output", "")):
            bad.append(f"the top-level output does not match /{says}/:\n{res.get('output', '')[:2000]}")
        if name == "stubs" and not all("not implemented" in x["output"].lower() for x in res["tests"]
                                       if "(hidden)" not in x["name"]):
            bad.append("a public test's output does not say which task is not implemented")
        best = sum(x["max_score"] for x in res["tests"])
        step(f"{name:<9} {res['score']}/{best} in {time.time() - t:.0f} s"
             + ("" if not bad else "  PROBLEMS:\n  " + "\n  ".join(bad)))
        problems += bool(bad)
    if problems:
        sys.exit(f"check_gradescope.py: {problems} submission(s) graded wrong; see {out}")
    step(f"Gradescope simulation passed (results and stdout of each submission in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
