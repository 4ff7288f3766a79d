#!/bin/sh
# The student release goes green once its lessons are done: export the release, copy the reference
# solutions into its lessons/ as a finished student would, build it with its own `make`, run its
# whole ctest suite (every test, not only the lessons) and its own grader, which must give full
# marks on the public tests. This is the release a student gets; CI runs it besides the stub run
# of ci_check.sh (which must give zero).
#
#   tools/lessons/check_release_green.sh [--release DIR] [--hidden] [OUT]
#       (default OUT: build/release-green; ~5-10 min on 2 cores)
#   --release DIR  start from this exported release (export_release.py's scalegpt-student, as it
#                  shipped: copied, not changed) instead of exporting one
#   --hidden       grade with the hidden tests and the full points.json added (--strict): full marks
#                  on every public and hidden test, no undeclared test -- the solutions' grading that
#                  CI needs, done on the release; then `make grade` as a student runs it (public tests
#                  only, the release's own points.json) on one lesson that builds on an earlier one
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FROM="" HIDDEN=0
while [ $# -gt 0 ]; do
  case $1 in
    --release) FROM=$(cd "$2" && pwd); shift 2 ;;
    --hidden) HIDDEN=1; shift ;;
    -*) echo "check_release_green: unknown option $1"; exit 2 ;;
    *) break ;;
  esac
done
OUT=${1:-$ROOT/build/release-green}
JOBS=${JOBS:-$(nproc)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$ROOT")}
start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - start )) s] $*"; }

REL="$OUT/scalegpt-student"
if [ -n "$FROM" ]; then
  step "copy the exported release ($FROM) and fill in its lessons from solutions/"
  rm -rf "$REL"
  mkdir -p "$OUT"
  cp -R "$FROM" "$REL"
  # Bytecode that running the release's grader left there is no part of the release.
  find "$REL" -name __pycache__ -type d -prune -exec rm -rf {} +
else
  step "export the release and fill in its lessons from solutions/"
  python3 "$ROOT/tools/lessons/export_release.py" --out "$OUT"
fi
n=0
for d in "$ROOT"/solutions/[0-9][0-9]_*/; do
  lesson=$(basename "$d")
  [ -d "$REL/lessons/$lesson" ] || { echo "check_release_green: the release has no lessons/$lesson"; exit 1; }
  cp -R "$d". "$REL/lessons/$lesson/"
  n=$((n + 1))
done
echo "copied the reference files of $n lessons into $REL/lessons/"
if [ -e "$REL/solutions" ] || [ -e "$REL/grading/hidden" ]; then
  echo "check_release_green: the release holds solutions/ or grading/hidden/"; exit 1
fi

step "make test in the release (its whole suite)"
(cd "$REL" && make test JOBS="$JOBS") > "$OUT/make-test.txt" 2>&1 || {
  tail -n 60 "$OUT/make-test.txt"; echo "check_release_green: make test failed in the release (log: $OUT/make-test.txt)"; exit 1; }
grep -E "tests passed|tests failed" "$OUT/make-test.txt"

if [ "$HIDDEN" = 1 ]; then
  step "the release's grader with the hidden tests added: full marks on every test, none undeclared"
  python3 "$REL/grading/grade.py" --course "$REL" --build-dir "$OUT/grade" --jobs "$JOBS" --expect full --strict \
    --hidden-dir "$ROOT/grading/hidden" --points "$ROOT/grading/points.json" \
    --results "$OUT/results.json" --junit "$OUT/junit.xml" > "$OUT/grade.txt" 2>&1 \
    || { cat "$OUT/grade.txt"; echo "check_release_green: the solutions did not get full marks"; exit 1; }
  grep "^Score" "$OUT/grade.txt"
  # A student's `make grade`: no hidden tests, the release's points.json; lesson 09 builds on lesson
  # 08, whose reference then comes from the student's own lessons/ (there is no solutions/).
  step "make grade in the release (public tests only) on lesson 09: full marks"
  python3 "$REL/grading/grade.py" --course "$REL" --build-dir "$OUT/grade-public" --jobs "$JOBS" --expect full \
    --lessons 09 > "$OUT/grade-public.txt" 2>&1 \
    || { cat "$OUT/grade-public.txt"; echo "check_release_green: the release's grader did not give full marks"; exit 1; }
  grep "^Score" "$OUT/grade-public.txt"
else
  step "make grade in the release: full marks on the public tests"
  python3 "$REL/grading/grade.py" --course "$REL" --build-dir "$OUT/grade" --jobs "$JOBS" --expect full \
    > "$OUT/grade.txt" 2>&1 || { cat "$OUT/grade.txt"; echo "check_release_green: the release's grader did not give full marks"; exit 1; }
  grep "^Score" "$OUT/grade.txt"
fi

step "the release goes green: every test passes and the grader gives full marks ($(( $(date +%s) - start )) s)"
