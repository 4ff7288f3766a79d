#!/bin/sh
# Everything CI checks for the lessons, in one script (run from anywhere, as root to test the
# grader's sandbox; about 10-15 minutes on 2 cores, most of it builds of common/, which ccache
# shortens when it is installed):
#   1. stubs are what make_stubs.py generates from solutions/; lessons/README.md, folders,
#      grading/points.json, README task points and slides agree
#   2. the red team (grading/redteam/run.py): every hostile submission scores zero on what it
#      attacks, the grader ends in bounded time, leaves nothing behind, leaks nothing
#   3. the instructor tree built from solutions/: every lesson test (public + hidden) passes, the
#      grader gives full marks (right after the red team: nothing it did carries over), and every
#      test in the binaries has an entry in points.json
#   4. the student release (make release): holds no solutions/hidden tests/solution text; built as
#      it ships (from its stubs, with the hidden tests added) every graded test fails: zero points;
#      a one-lesson Gradescope autograder is exported
#   5. that autograder run as Gradescope runs it (tools/lessons/check_gradescope.py, root only): its
#      setup.sh, then run_autograder on the reference (full marks), the stubs, a compile error and
#      an empty submission (zero), each results.json checked against Gradescope's format
#   6. the release goes green; 7. README commands; 8. Doxygen of common/ with WARN_AS_ERROR (set
#      SGPT_CI_DOCS_WARN_ONLY=1 to report and go on)
# Build folders are under build/ci-lessons/; every grading run starts from a new copy of the course.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${SGPT_CI_LESSONS_DIR:-$ROOT/build/ci-lessons}
JOBS=${JOBS:-$(nproc)}
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - start )) s] $*"; }

step "1/8 stubs and index"
python3 "$ROOT/tools/lessons/make_stubs.py" --check
python3 "$ROOT/tools/lessons/check_index.py"

step "2/8 red team: hostile submissions score zero, the grader ends, nothing leaks or survives"
# 12 attack classes: the lint tricks, forge, tamper_leak, compile_trick, detached, resources,
# job_memory, ring_deadlock, library_call (lesson 01), library_call_03, _05, _10. As root every one
# runs (none skipped): the count is one per cases/ folder plus the lint tricks.
python3 "$ROOT/grading/redteam/run.py" --course "$ROOT" --out "$OUT/redteam" --jobs "$JOBS" > "$OUT/redteam.txt" 2>&1 \
  || { cat "$OUT/redteam.txt"; exit 1; }
cat "$OUT/redteam.txt"
if [ "$(id -u)" = 0 ]; then
  n=$(( $(find "$ROOT/grading/redteam/cases" -mindepth 1 -maxdepth 1 -type d | wc -l) + 1 ))
  grep -q "^redteam: $n/$n attack classes defeated" "$OUT/redteam.txt" \
    || { echo "red team: expected $n/$n attack classes defeated"; exit 1; }
fi

step "3/8 solutions: full marks, every lesson test passes"
python3 "$ROOT/grading/grade.py" --course "$ROOT" --submission "$ROOT/solutions" --run-dir "$OUT/instructor" \
  --jobs "$JOBS" --strict --expect full --results "$OUT/solutions-results.json" --junit "$OUT/solutions-junit.xml" \
  > "$OUT/solutions-grade.txt" || { cat "$OUT/solutions-grade.txt"; exit 1; }
grep "^Score" "$OUT/solutions-grade.txt"
# The graded build, reused: drivers too, and ctest as `make test` runs it (graded builds register
# each single-process test binary as one ctest test, each multi-rank binary once per rank count).
cmake --build "$OUT/instructor/build" -j "$JOBS" --target lessons > "$OUT/lessons-build.txt"
ctest --test-dir "$OUT/instructor/build" -L lessons --output-on-failure -j "$JOBS" > "$OUT/lessons-ctest.txt" \
  || { cat "$OUT/lessons-ctest.txt"; exit 1; }
grep "tests passed" "$OUT/lessons-ctest.txt"

step "4/8 student release: exported, clean, builds, zero points on stubs"
python3 "$ROOT/tools/lessons/export_release.py" --out "$OUT/release" --autograder --lessons 04
python3 "$ROOT/tools/lessons/check_release.py" --release "$OUT/release/scalegpt-student"
# The one-lesson autograder holds lesson 04's hidden tests, no other lesson's, and grades lesson 04.
python3 - "$OUT/release/autograder-04.zip" <<'PY'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
hidden = {n.split("/")[3] for n in z.namelist() if n.startswith("course/grading/hidden/")}
ok = hidden == {"04_collectives"} and z.read("lessons.txt").decode().split() == ["04"]
print("autograder-04.zip: lesson 04 only" if ok else f"autograder-04.zip: wrong contents {hidden}")
sys.exit(0 if ok else 1)
PY
REL="$OUT/release/scalegpt-student"
python3 "$REL/grading/grade.py" --course "$REL" --submission "$REL/lessons" --run-dir "$OUT/release-grade" \
  --hidden-dir "$ROOT/grading/hidden" --points "$ROOT/grading/points.json" \
  --jobs "$JOBS" --strict --expect zero --junit "$OUT/stubs-junit.xml" \
  > "$OUT/stubs-grade.txt" || { cat "$OUT/stubs-grade.txt"; exit 1; }
grep "^Score" "$OUT/stubs-grade.txt"
# Every public test binary and driver of the release compiles as shipped.
cmake --build "$OUT/release-grade/build" -j "$JOBS" --target lessons > "$OUT/release-lessons-build.txt"
echo "release: lessons, drivers and tests compile"

step "5/8 Gradescope: the one-lesson autograder's setup.sh and run_autograder in a temporary root"
if [ "$(id -u)" = 0 ]; then
  python3 "$ROOT/tools/lessons/check_gradescope.py" --lesson 04 --out "$OUT/gradescope"
else
  echo "skipped: setup.sh and the grader's sandbox need root"
fi

step "6/8 the release goes green: solutions copied in, its whole suite passes, its grader gives full marks"
sh "$ROOT/tools/lessons/check_release_green.sh" "$OUT/release-green"

step "7/8 README commands marked <!-- ci: run --> work as written"
python3 "$ROOT/tools/lessons/check_readme_commands.py"

step "8/8 docs (Doxygen, warnings are errors)"
# From the course tree itself (as `make docs`; the graded build's copy lives under build/, which
# Doxygen excludes), configured without tests: nothing is compiled.
cmake -S "$ROOT" -B "$OUT/docs" -G Ninja -DSCALEGPT_BUILD_TESTS=OFF > "$OUT/docs-configure.txt"
if cmake --build "$OUT/docs" --target docs > "$OUT/docs.txt" 2>&1; then
  echo "docs: $OUT/docs/docs/html/index.html"
else
  n=$(wc -l < "$OUT/docs/docs/warnings.log" 2>/dev/null || echo "?")
  echo "docs: Doxygen reported $n warning line(s); see $OUT/docs/docs/warnings.log"
  if [ "${SGPT_CI_DOCS_WARN_ONLY:-0}" != 1 ]; then exit 1; fi
fi

step "lessons CI passed in $(( $(date +%s) - start )) s"
