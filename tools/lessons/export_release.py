#!/usr/bin/env python3
"""Export the student release: the course tree without solutions/ and hidden tests.

    export_release.py [--out build/release]         -> build/release/scalegpt-student/ + .tar.gz
    export_release.py --autograder                  -> also build/release/autograder.zip (Gradescope)
    export_release.py --autograder --lessons 04     -> build/release/autograder-04.zip: grades lesson 04 only

The release holds every file git tracks or would track (untracked files that .gitignore does not
ignore), minus solutions/, grading/hidden/, grading/gradescope/, and with grading/points.json
reduced to the public tests. The autograder bundle is the release plus the hidden tests, the full
points.json, the reference solutions of the lessons that a graded lesson builds on (points.json
"builds_on"), setup.sh and run_autograder, laid out as Gradescope expects (files at the zip's root).
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
# tools/lessons/mutants/ holds edits of the reference solutions (each mutant quotes the lines it
# changes): course staff only, like solutions/.
EXCLUDE = ("solutions/", "grading/hidden/", "grading/gradescope/", "grading/redteam/", "tools/lessons/mutants/",
           "build/")


def course_files(root):
    out = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         check=True, capture_output=True).stdout.decode()
    files = sorted({f for f in out.split("\0") if f and (root / f).is_file()})
    return [f for f in files if not f.startswith(EXCLUDE)]


def copy_tree(root, files, dest):
    if dest.exists():
        shutil.rmtree(dest)
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, dest / f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=pathlib.Path, default=ROOT)
    ap.add_argument("--out", type=pathlib.Path, default=None, help="default: <root>/build/release")
    ap.add_argument("--autograder", action="store_true", help="also write autograder.zip for Gradescope")
    ap.add_argument("--lessons", nargs="*", help="the autograder grades only these lessons (one Gradescope "
                                                 "assignment per lesson): autograder-NN.zip")
    a = ap.parse_args()
    root = a.root.resolve()
    out = (a.out or root / "build" / "release").resolve()
    rel = out / "scalegpt-student"
    files = course_files(root)
    copy_tree(root, files, rel)
    points = json.loads((root / "grading" / "points.json").read_text())
    for l in points["lessons"]:
        hidden = [t for t in l["tests"] if t["binary"] == "hidden"]
        if hidden:
            l["hidden_summary"] = {"tests": len(hidden), "points": sum(t["points"] for t in hidden)}
        l["tests"] = [t for t in l["tests"] if t["binary"] != "hidden"]
    (rel / "grading" / "points.json").write_text(json.dumps(points, indent=1) + "\n")
    tgz = out / "scalegpt-student.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(rel, arcname="scalegpt-student")
    print(f"export_release: {len(files)} files -> {rel}\nexport_release: {tgz}")

    if a.autograder:
        full = json.loads((root / "grading" / "points.json").read_text())
        known = {l["number"]: f"{l['number']}_{l['slug']}" for l in full["lessons"]}
        for n in a.lessons or []:
            if n not in known:
                sys.exit(f"export_release: no lesson {n} in grading/points.json")
        zpath = out / ("autograder-" + "-".join(a.lessons) + ".zip" if a.lessons else "autograder.zip")
        gs = root / "grading" / "gradescope"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for name in ("setup.sh", "run_autograder"):
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o755 << 16
                z.writestr(info, (gs / name).read_text())
            # run_autograder and setup.sh pass these to grade.py --lessons (empty: every lesson).
            z.writestr("lessons.txt", " ".join(a.lessons or []) + "\n")
            for f in files:
                src = root / "grading" / "points.json" if f == "grading/points.json" else root / f
                z.write(src, f"course/{f}")
            # The reference of the earlier lessons that the graded ones build on (points.json
            # "builds_on": lesson 09 runs on lesson 08's split); grade.py builds it before any
            # student code runs and hides it like the hidden tests.
            graded = [l for l in full["lessons"] if not a.lessons or l["number"] in a.lessons]
            by_number = {l["number"]: l for l in full["lessons"]}
            deps, todo = set(), [d for l in graded for d in l.get("builds_on", [])]
            while todo:
                n = todo.pop()
                if n not in deps:
                    deps.add(n)
                    todo += by_number[n].get("builds_on", [])
            for n in sorted(deps):
                for f in by_number[n]["student_files"]:
                    src = root / "solutions" / known[n] / f
                    z.write(src, f"course/solutions/{known[n]}/{f}")
            for p in sorted((root / "grading" / "hidden").rglob("*")):
                lesson_dir = p.relative_to(root / "grading" / "hidden").parts[0]
                if p.is_file() and (not a.lessons or lesson_dir in {known[n] for n in a.lessons}):
                    z.write(p, f"course/{p.relative_to(root)}")
        print(f"export_release: {zpath} (upload it as the Gradescope autograder)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
