#!/usr/bin/env python3
"""Grade a ScaleGPT submission: build it against the course tree and run every test alone.

    grade.py                                  grade this tree's lessons/ (what `make grade` runs)
    grade.py --submission work.zip            grade a directory, .zip or .tar.gz
    grade.py --results results.json --junit junit.xml     also write Gradescope's and JUnit's files

Only the student files that grading/points.json declares are taken from the submission (found as
.../NN_slug/<file>, or by their unique file name); they are copied into a staging folder that the
build reads through -DSCALEGPT_LESSONS_FROM. The course tree (tests, CMake, common/) is never
touched, so a submission's changes to anything else are ignored. A declared file that is missing
is replaced by its stub (its tests then fail with "not implemented").

Each lesson's test binaries are built separately (a compile error costs that lesson only) and each
test runs in its own process with a time limit (a crash or hang costs that test only).
"""
import argparse
import html
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

HERE = pathlib.Path(__file__).resolve().parent


def log(*a):
    print(*a, flush=True)


def extract(sub, tmp):
    sub = pathlib.Path(sub)
    if sub.is_dir():
        return sub
    out = pathlib.Path(tmp) / "submission"
    out.mkdir()
    name = sub.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(sub) as z:
            for m in z.infolist():  # no absolute paths or '..' escapes
                p = pathlib.PurePosixPath(m.filename)
                if p.is_absolute() or ".." in p.parts:
                    continue
                z.extract(m, out)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(sub) as t:
            t.extractall(out, filter="data")
    else:
        sys.exit(f"grade.py: {sub} is not a directory, .zip or .tar.gz")
    return out


def find_student_file(root, lesson_dir, fname):
    """The submission's copy of lessons/<lesson_dir>/<fname>, or None."""
    cands = [p for p in root.rglob(fname) if p.is_file() and "build" not in p.relative_to(root).parts]
    for pref in (f"lessons/{lesson_dir}/{fname}", f"{lesson_dir}/{fname}"):
        hits = [p for p in cands if p.as_posix().endswith(pref)]
        if hits:
            return sorted(hits, key=lambda p: len(p.parts))[0]
    return cands[0] if len(cands) == 1 else None


def sync_file(src, dst):
    """Copies only when the content changed, so the build stays incremental."""
    data = src.read_bytes()
    if dst.exists() and dst.read_bytes() == data:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)


def run(cmd, timeout=None, cwd=None, env=None):
    """Returns (returncode or 'timeout', output, seconds)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the test and anything it started
        out, _ = p.communicate()
        rc = "timeout"
    return rc, out.decode(errors="replace"), time.time() - t0


def tail(text, n=6000):
    return text if len(text) <= n else "...\n" + text[-n:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--course", type=pathlib.Path, default=HERE.parent, help="course tree (default: this one)")
    ap.add_argument("--submission", help="directory, .zip or .tar.gz (default: the course's lessons/)")
    ap.add_argument("--build-dir", type=pathlib.Path, help="default: <course>/build/grade")
    ap.add_argument("--hidden-dir", type=pathlib.Path, help="hidden tests (default: <course>/grading/hidden)")
    ap.add_argument("--points", type=pathlib.Path, help="default: <course>/grading/points.json")
    ap.add_argument("--lessons", nargs="*", help="only these lesson numbers, e.g. 01 03")
    ap.add_argument("--results", type=pathlib.Path, help="write Gradescope results.json here")
    ap.add_argument("--junit", type=pathlib.Path, help="write JUnit XML here")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--threads", default="2", help="OMP_NUM_THREADS of each test")
    ap.add_argument("--expect", choices=["full", "zero"], help="exit 1 unless every graded test passes / fails")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a test binary holds a test that points.json does not declare, or the reverse")
    ap.add_argument("--cmake-arg", action="append", default=[], help="extra -D option for the configure step")
    a = ap.parse_args()

    course = a.course.resolve()
    points = json.loads((a.points or course / "grading" / "points.json").read_text())
    build_dir = (a.build_dir or course / "build" / "grade").resolve()
    hidden_dir = (a.hidden_dir or course / "grading" / "hidden").resolve()
    limit = points.get("time_limit_s", 60)
    lessons = [l for l in points["lessons"] if not a.lessons or l["number"] in a.lessons]
    lessons = [l for l in lessons if (course / "lessons" / f"{l['number']}_{l['slug']}").is_dir()]

    with tempfile.TemporaryDirectory() as tmp:
        sub_root = extract(a.submission, tmp) if a.submission else course / "lessons"
        stage = build_dir / "submission"
        notes = []
        for l in lessons:
            d = f"{l['number']}_{l['slug']}"
            for f in l["student_files"]:
                src = find_student_file(pathlib.Path(sub_root), d, f)
                if src is None:
                    src = course / "lessons" / d / f
                    notes.append(f"lesson {l['number']}: {f} is not in the submission; graded with the stub")
                sync_file(src, stage / d / f)
        for n in notes:
            log("note:", n)

        bdir = build_dir / "build"
        cfg = ["cmake", "-S", str(course), "-B", str(bdir), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
               f"-DSCALEGPT_LESSONS_FROM={stage}", f"-DSCALEGPT_HIDDEN_TESTS_DIR={hidden_dir}",
               "-DSCALEGPT_CUDA=OFF"] + a.cmake_arg
        rc, out, _ = run(cfg)
        if rc != 0:
            log(tail(out))
            sys.exit("grade.py: configuring the course tree failed (not the submission's fault)")
        rc, out, secs = run(["cmake", "--build", str(bdir), "-j", str(a.jobs), "--target", "sgpt"])
        if rc != 0:
            log(tail(out))
            sys.exit("grade.py: building the common library failed (not the submission's fault)")

        env = dict(os.environ, OMP_NUM_THREADS=a.threads, OMP_WAIT_POLICY="PASSIVE")
        results, problems = [], []
        for l in lessons:
            num, d = l["number"], f"{l['number']}_{l['slug']}"
            for group in ("public", "hidden"):
                tests = [t for t in l["tests"] if t["binary"] == group]
                if group == "hidden" and not (hidden_dir / d).is_dir():
                    if tests:
                        log(f"note: lesson {num}: {len(tests)} hidden test(s) are not in this tree "
                            "(the instructor's grader runs them)")
                    continue
                target = f"lesson{num}_tests" if group == "public" else f"lesson{num}_hidden_tests"
                rc, bout, secs = run(["cmake", "--build", str(bdir), "-j", str(a.jobs), "--target", target])
                binary = bdir / "lessons" / d / target
                built = rc == 0 and binary.exists()
                if built and a.strict:
                    lrc, lout, _ = run([str(binary), "--gtest_list_tests"], timeout=60, env=env)
                    listed, suite = set(), None
                    for line in lout.splitlines():
                        if not line.strip() or line.startswith("Running main"):
                            continue
                        if not line.startswith(" "):
                            suite = line.strip()
                        else:
                            listed.add(suite + line.strip().split()[0])
                    declared = {t["name"] for t in tests}
                    for x in sorted(listed - declared):
                        problems.append(f"lesson {num} ({group}): test {x} has no entry in points.json")
                    for x in sorted(declared - listed):
                        problems.append(f"lesson {num} ({group}): points.json declares {x}, not in {target}")
                for t in tests:
                    r = dict(lesson=num, slug=l["slug"], group=group, name=t["name"], task=t.get("task", 0),
                             max_score=t["points"], score=0, status="failed", seconds=0.0)
                    if not built:
                        r["output"] = f"lesson {num}: the {group} tests did not compile/link:\n" + tail(bout, 4000)
                        r["why"] = "build failed"
                    else:
                        tl = t.get("time_limit_s", limit)
                        trc, tout, tsecs = run([str(binary), f"--gtest_filter={t['name']}", "--gtest_color=no"],
                                               timeout=tl, cwd=tmp, env=env)
                        r["seconds"] = tsecs
                        r["output"] = tail(tout)
                        if trc == "timeout":
                            r["why"] = f"timed out after {tl} s"
                        elif trc == 0 and "[  PASSED  ] 1 test" in tout:
                            r["status"], r["score"], r["why"] = "passed", t["points"], "ok"
                        elif trc == 0:
                            r["why"] = "test not found in the binary"
                        elif isinstance(trc, int) and trc < 0:
                            r["why"] = f"crashed ({signal.Signals(-trc).name})"
                        elif "not implemented: lesson" in tout:
                            r["why"] = "not implemented"
                        else:
                            r["why"] = "failed"
                    results.append(r)

    # ---- the table -----------------------------------------------------------------------------------
    total = sum(r["score"] for r in results)
    max_total = sum(r["max_score"] for r in results)
    log("")
    for l in lessons:
        rs = [r for r in results if r["lesson"] == l["number"]]
        if not rs:
            continue
        log(f"== lesson {l['number']}: {l['title']} "
            f"({sum(r['score'] for r in rs)}/{sum(r['max_score'] for r in rs)}) ==")
        tasks = sorted({r["task"] for r in rs}, key=int)
        for task in tasks:
            tr = [r for r in rs if r["task"] == task]
            title = l["tasks"].get(str(task), "given code (not graded)")
            log(f"  task {task}: {title}  [{sum(r['score'] for r in tr)}/{sum(r['max_score'] for r in tr)}]")
            for r in tr:
                name = r["name"] + (" (hidden)" if r["group"] == "hidden" else "")
                pts = f"{r['score']}/{r['max_score']}" if r["max_score"] else "not graded"
                log(f"    {name:<52} {r['why']:<22} {pts:>10}  ({r['seconds']:.1f} s)")
    log(f"\nScore: {total}/{max_total}")

    if a.results:
        a.results.parent.mkdir(parents=True, exist_ok=True)
        gs = {"score": total, "visibility": "visible", "stdout_visibility": "visible", "tests": []}
        for r in results:
            if r["max_score"] == 0:
                continue
            gs["tests"].append({
                "name": f"lesson {r['lesson']} task {r['task']}: {r['name']}" + (" (hidden)" if r["group"] == "hidden" else ""),
                "number": f"{int(r['lesson'])}.{r['task']}",
                "score": r["score"], "max_score": r["max_score"], "status": r["status"],
                "output": f"{r['why']}\n\n{r.get('output', '')}",
                "visibility": "after_published" if r["group"] == "hidden" else "visible"})
        a.results.write_text(json.dumps(gs, indent=1))
        log(f"wrote {a.results}")
    if a.junit:
        a.junit.parent.mkdir(parents=True, exist_ok=True)
        parts = ['<?xml version="1.0" encoding="UTF-8"?>',
                 f'<testsuites name="scalegpt-grade" tests="{len(results)}" '
                 f'failures="{sum(r["status"] != "passed" for r in results)}">']
        for l in lessons:
            rs = [r for r in results if r["lesson"] == l["number"]]
            parts.append(f'  <testsuite name="lesson{l["number"]}" tests="{len(rs)}" '
                         f'failures="{sum(r["status"] != "passed" for r in rs)}">')
            for r in rs:
                cls = f"lesson{r['lesson']}.{r['group']}"
                parts.append(f'    <testcase classname="{cls}" name="{html.escape(r["name"])}" time="{r["seconds"]:.3f}">')
                if r["status"] != "passed":
                    parts.append(f'      <failure message="{html.escape(r["why"])}">'
                                 f'{html.escape(r.get("output", ""))}</failure>')
                parts.append(f'      <properties><property name="points" value="{r["score"]}/{r["max_score"]}"/>'
                             f'<property name="task" value="{r["task"]}"/></properties>')
                parts.append("    </testcase>")
            parts.append("  </testsuite>")
        parts.append("</testsuites>")
        a.junit.write_text("\n".join(parts) + "\n")
        log(f"wrote {a.junit}")

    status = 0
    for p in problems:
        log("grade.py --strict:", p)
        status = 1
    graded = [r for r in results if r["max_score"] > 0]
    if a.expect == "full":
        bad = [r for r in graded if r["status"] != "passed"]
        for r in bad:
            log(f"grade.py --expect full: lesson {r['lesson']} {r['name']} ({r['group']}): {r['why']}")
        status |= 1 if bad else 0
    elif a.expect == "zero":
        bad = [r for r in graded if r["status"] == "passed"]
        for r in bad:
            log(f"grade.py --expect zero: lesson {r['lesson']} {r['name']} ({r['group']}) passes on a stub")
        status |= 1 if bad else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
