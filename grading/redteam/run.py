#!/usr/bin/env python3
"""The red team: grade hostile submissions and prove that each one fails at what it attacks.

    python3 grading/redteam/run.py [--cases forge,detached] [--out build/redteam] [--jobs 2]

Each folder of cases/ is one submission, built from a lesson's stub or solution file plus an attack
(case.json says which, and what must hold). For every case the grader runs on a fresh copy of the
course, restricted to the attacked lesson (and, where the attack does not depend on which test runs,
to a few of its tests), and this script asserts:

  * the tests the case attacks score zero (and those it does not attack keep their points),
    with the reason the grader gives (time-out, forbidden call, the job's memory...) and, where
    the case names them (expect_log), the grader's messages (which call was forbidden);
  * the grader ends within the case's bound (max_seconds, default 240);
  * the checks the case names: the course tree is byte-for-byte unchanged, no line of the hidden
    tests appears in the results, results.json does not change after the grader exits, no process
    of the grader's test user is left, the key the grader's reporter uses could not be read, and
    a clean submission (the solutions) graded right after gets full marks.

Cases with "lint": "warn" are graded with the sandbox checks of grading/lint.py reported but not
enforced, so that the run-time defences (user, namespaces, limits, authenticated results) are what
is tested; "lint_expect" asserts that lint.py would also have caught the submission.
Run as root (as CI and Gradescope do) to test the unprivileged user and the namespaces.
"""
import argparse
import hashlib
import json
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def lesson_of(points, num):
    return next(l for l in points["lessons"] if l["number"] == num)


def build_submission(case, c, course, out, results):
    points = json.loads((course / "grading" / "points.json").read_text())
    l = lesson_of(points, c["lesson"])
    d = f"{l['number']}_{l['slug']}"
    sub = out / "submission" / d
    sub.mkdir(parents=True)
    base_root = course / ("solutions" if c["base"] == "solution" else "lessons") / d
    for f in l["student_files"]:
        text = (base_root / f).read_text()
        if f == c["file"]:
            for old, new in c.get("replace", []):
                if old not in text:
                    sys.exit(f"redteam {case}: the text to replace is not in {base_root / f}:\n{old}")
                text = text.replace(old, new)
            if c.get("append"):
                text += "\n" + (HERE / "cases" / case / c["append"]).read_text()
            text = text.replace("@COURSE@", str(course)).replace("@RESULTS@", str(results))
        (sub / f).write_text(text)
    return out / "submission", l, d


def tree_hash(course, d):
    h = hashlib.sha256()
    paths = [course / "CMakeLists.txt", course / "grading" / "points.json"]
    for sub in (course / "lessons" / d, course / "grading" / "hidden" / d):
        paths += sorted(p for p in sub.rglob("*") if p.is_file())
    for p in paths:
        h.update(str(p).encode() + b"\0" + (p.read_bytes() if p.exists() else b"<missing>"))
    return h.hexdigest()


def hidden_lines(course, d):
    """Lines specific to the hidden tests (long, not comments, not in the public tests)."""
    public = "\n".join(p.read_text() for p in (course / "lessons" / d).rglob("*.[ch]pp"))
    lines = set()
    for p in (course / "grading" / "hidden" / d).rglob("*.cpp"):
        for line in p.read_text().splitlines():
            s = line.strip()
            if len(s) >= 30 and not s.startswith("//") and s not in public:
                lines.add(s)
    return lines


def grader_uid():
    try:
        return pwd.getpwnam("sgpt-grader").pw_uid
    except KeyError:
        return None


def survivors(uid):
    if uid is None:
        return []
    out = subprocess.run(["ps", "-o", "pid=,args=", "-u", str(uid)], capture_output=True, text=True).stdout
    return [x for x in out.splitlines() if x.strip()]


def run_case(case, course, out_root, jobs):
    c = json.loads((HERE / "cases" / case / "case.json").read_text())
    out = out_root / case
    shutil.rmtree(out, ignore_errors=True)
    (out / "results").mkdir(parents=True)
    os.chmod(out / "results", 0o777)  # a careless results folder: only the process layer protects it
    results, summary = out / "results" / "results.json", out / "summary.json"
    sub, l, d = build_submission(case, c, course, out, results)
    before = tree_hash(course, d)
    cmd = [sys.executable, str(course / "grading" / "grade.py"), "--course", str(course), "--submission", str(sub),
           "--lessons", c["lesson"], "--work-dir", str(out_root / "work"), "--results", str(results),
           "--summary", str(summary), "--jobs", str(jobs)]
    if c.get("tests"):
        cmd += ["--tests", c["tests"]]
    if c.get("time_limit"):
        cmd += ["--time-limit", str(c["time_limit"])]
    if c.get("lint"):
        cmd += ["--lint", c["lint"]]
    if c.get("job_memory_mb"):
        cmd += ["--job-memory-mb", str(c["job_memory_mb"])]
    bound = c.get("max_seconds", 240)
    t0 = time.time()
    problems = []
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=bound)
        log = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        problems.append(f"the grader did not end within {bound} s")
    secs = time.time() - t0
    (out / "grade.log").write_text(log)
    res_text = results.read_text() if results.exists() else ""
    rows = json.loads(summary.read_text()) if summary.exists() else []
    if not rows:
        problems.append("the grader wrote no results")

    graded = [r for r in rows if r["max_score"] > 0]
    if c.get("expect_zero"):
        rx = re.compile(c["expect_zero"])
        hit = [r for r in graded if rx.search(r["name"])]
        if not hit:
            problems.append(f"no graded test matches expect_zero {c['expect_zero']}")
        for r in hit:
            if r["score"] != 0:
                problems.append(f"{r['name']} scored {r['score']}/{r['max_score']} ({r['why']})")
    if c.get("expect_full"):
        rx = re.compile(c["expect_full"])
        for r in (r for r in graded if rx.search(r["name"])):
            if r["score"] != r["max_score"]:
                problems.append(f"{r['name']} should keep its points: {r['score']}/{r['max_score']} ({r['why']})")
    for rx, why in c.get("expect_why", {}).items():
        for r in (r for r in graded if re.search(rx, r["name"])):
            if why not in r["why"]:
                problems.append(f"{r['name']}: reason '{r['why']}', expected '{why}'")
    for phrase in c.get("expect_log", []):
        if phrase not in log:
            problems.append(f"the grader's log does not say '{phrase}'")
    if c.get("lint_expect") and "graded code may not" not in log:
        problems.append("grading/lint.py did not report the submission")

    checks = c.get("checks", [])
    if "results_stable" in checks:
        time.sleep(6)  # longer than the daemon waits before it writes
        now = results.read_text() if results.exists() else ""
        if now != res_text:
            problems.append("results.json changed after the grader ended")
        try:
            if json.loads(res_text)["score"] != sum(r["score"] for r in rows):
                problems.append("results.json holds a score the grader did not give")
        except (ValueError, KeyError):
            problems.append("results.json is not the grader's")
    if "no_survivors" in checks:
        left = survivors(grader_uid())
        if left:
            problems.append(f"processes of the test user outlived the grader: {left[:3]}")
    if "course_unchanged" in checks and tree_hash(course, d) != before:
        problems.append("the course tree changed")
    if "no_hidden_text" in checks:
        text = res_text + json.dumps(rows) + log
        leaked = [s for s in hidden_lines(course, d) if s in text]
        if leaked:
            problems.append(f"{len(leaked)} line(s) of the hidden tests are in the results, e.g. {leaked[0]!r}")
    if "no_stolen_key" in checks:
        outputs = "\n".join(t.get("output", "") for t in json.loads(res_text or "{}").get("tests", []))
        keys = re.findall(r"STOLEN-KEY-\w+=([^\s]*)", outputs)
        if not keys:
            problems.append("the attack's key report is not in the output (did it run?)")
        if any(re.fullmatch(r"0*", k) is None for k in keys):
            problems.append("a static initialiser read the grader's key")
    if "memory_limited" in checks and "HOG: allocation failed" not in res_text:
        problems.append("the memory hog was not stopped by the address-space limit")
    if "clean_after" in checks:
        p2 = subprocess.run([sys.executable, str(course / "grading" / "grade.py"), "--course", str(course),
                             "--submission", str(course / "solutions"), "--lessons", c["lesson"],
                             "--work-dir", str(out_root / "work"), "--jobs", str(jobs), "--expect", "full"]
                            + (["--tests", c["tests"]] if c.get("tests") else []),
                            capture_output=True, text=True, timeout=600)
        (out / "clean-after.log").write_text(p2.stdout + p2.stderr)
        if p2.returncode != 0:
            problems.append("the solutions graded right after did not get full marks (see clean-after.log)")
    score = sum(r["score"] for r in rows)
    return problems, secs, score, sum(r["max_score"] for r in rows)


LINT_EXPECT = {  # lint/<file>.cpp -> a phrase lint.py must report for it
    "interpose": "defines the C symbol strncpy",
    "gtest_override": "defines testing::TestResult::Passed",
    "preinit": ".preinit_array",
    "ifunc": "IFUNC",
    "raw_syscall": "'syscall' instruction",
    "library_override": "defines sgpt::shard_count",
    "inline_test_helper": "calls sgpt::testing::helper_step",
}


def lint_cases(out):
    """Compiles each lint/ case into a static library (optimised) and an unoptimised object (as the
    graded build's lessonNN_lint) and checks that grading/lint.py rejects it (attacks that the
    sandbox alone would not stop: they act inside the test process)."""
    sys.path.insert(0, str(HERE.parent))
    import lint  # noqa: E402
    problems = []
    d = out / "lint"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name, phrase in LINT_EXPECT.items():
        obj, lib = d / f"{name}.o", d / f"lib{name}.a"
        r = subprocess.run(["c++", "-std=c++20", "-O2", "-c", str(HERE / "lint" / f"{name}.cpp"), "-o", str(obj)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"lint/{name}.cpp does not compile: {r.stderr[-300:]}")
            continue
        subprocess.run(["ar", "rcs", str(lib), str(obj)], check=True)
        obj0 = d / f"{name}.O0.o"
        subprocess.run(["c++", "-std=c++20", "-O0", "-fno-inline", "-c", str(HERE / "lint" / f"{name}.cpp"),
                        "-o", str(obj0)], check=True, capture_output=True)
        found, _ = lint.check(lib, [], [obj0])
        if not any(phrase in m for m in found):
            problems.append(f"lint/{name}.cpp: grading/lint.py did not report '{phrase}' (it said {found})")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--course", type=pathlib.Path, default=ROOT)
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="default: <course>/build/redteam")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    course = a.course.resolve()
    out = (a.out or course / "build" / "redteam").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cases = a.cases.split(",") if a.cases else sorted(p.name for p in (HERE / "cases").iterdir() if p.is_dir())
    if os.geteuid() != 0:
        print("redteam: not root: the unprivileged user and the namespaces are not tested")
    failed = skipped = 0
    t0 = time.time()
    if not a.cases:
        problems = lint_cases(out)
        print(f"redteam {'ok  ' if not problems else 'FAIL'} {'lint':<15} {len(LINT_EXPECT)} in-process tricks "
              "rejected by grading/lint.py", flush=True)
        for p in problems:
            print(f"    {p}")
        failed += bool(problems)
    for case in cases:
        if os.geteuid() != 0 and json.loads((HERE / "cases" / case / "case.json").read_text()).get("needs_root"):
            print(f"redteam skip {case:<15} (needs root: the grader's user switch, mount namespace and "
                  "process limit are what it tests)")
            skipped += 1
            continue
        problems, secs, score, max_score = run_case(case, course, out, a.jobs)
        mark = "ok  " if not problems else "FAIL"
        print(f"redteam {mark} {case:<15} {score}/{max_score} points, graded in {secs:.0f} s", flush=True)
        for p in problems:
            print(f"    {p}")
        failed += bool(problems)
    total = len(cases) + (not a.cases) - skipped
    print(f"redteam: {total - failed}/{total} attack classes defeated" + (f", {skipped} skipped" if skipped else "")
          + f" in {time.time() - t0:.0f} s (logs in {out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
