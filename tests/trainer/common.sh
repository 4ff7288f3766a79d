# The start every trainer test shares (tests/trainer/*.sh; ctest passes the arguments, see
# CMakeLists.txt). Source it after `set`, then name the leading arguments:
#   source "$(dirname "$0")/common.sh"
#   trainer_args train compare -- "$@"   # train=$1 compare=$2; the rest (the mpiexec prefix
#                                        # without -np, or nothing) in the array mpi
# $dir is a scratch folder, removed when the test exits.

trainer_args() {
  local names=()
  while [ "$1" != "--" ]; do
    names+=("$1")
    shift
  done
  shift
  if [ $# -lt ${#names[@]} ]; then
    echo "usage: $0 ${names[*]} [mpiexec prefix...]: got $# argument(s)" >&2
    exit 2
  fi
  local n
  for n in "${names[@]}"; do
    printf -v "$n" '%s' "$1"
    shift
  done
  mpi=("$@")
}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
