#!/usr/bin/env bash
# Downloads Tiny Shakespeare, verifies its SHA-256, and byte-tokenizes it into train.bin/val.bin.
#
#   datasets/tinyshakespeare.sh                      # download into data/tinyshakespeare/
#   datasets/tinyshakespeare.sh --from ../shared/datasets/tinyshakespeare.txt
#   datasets/tinyshakespeare.sh --out /scratch/ts --bin build/cuda/tools/data/scalegpt-data
#
# Options:
#   --from FILE          use a local copy instead of downloading (its checksum is verified too)
#   --out DIR            output directory (default: <repo>/data/tinyshakespeare, or $SCALEGPT_DATA_DIR)
#   --bin PATH           the scalegpt-data program (default: $SCALEGPT_DATA_BIN, then
#                        <repo>/build/cpu/tools/data/scalegpt-data, then any build/*/tools/data/, then PATH)
#   --val-fraction F     fraction at the end kept for validation (default 0.1)
#   SCALEGPT_TINYSHAKESPEARE_URL   download from a mirror instead (the checksum still applies)
#
# Nothing already on disk is deleted: a download goes to a temporary name and is moved into place
# only when its checksum matches; a mismatch stops the script with an error.
set -euo pipefail

URL="${SCALEGPT_TINYSHAKESPEARE_URL:-https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt}"
SHA256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FROM=""
OUT="${SCALEGPT_DATA_DIR:-$ROOT/data/tinyshakespeare}"
BIN="${SCALEGPT_DATA_BIN:-}"
VAL_FRACTION="0.1"

die() { echo "tinyshakespeare.sh: error: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --from) [[ $# -ge 2 ]] || die "--from needs a file"; FROM="$2"; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT="$2"; shift 2 ;;
    --bin) [[ $# -ge 2 ]] || die "--bin needs a path"; BIN="$2"; shift 2 ;;
    --val-fraction) [[ $# -ge 2 ]] || die "--val-fraction needs a value"; VAL_FRACTION="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else die "neither sha256sum nor shasum is installed"; fi
}

# Finds the scalegpt-data program.
if [[ -z "$BIN" ]]; then
  for candidate in "$ROOT/build/cpu/tools/data/scalegpt-data" "$ROOT"/build/*/tools/data/scalegpt-data; do
    if [[ -x "$candidate" ]]; then BIN="$candidate"; break; fi
  done
fi
if [[ -z "$BIN" ]] && command -v scalegpt-data >/dev/null 2>&1; then BIN="$(command -v scalegpt-data)"; fi
[[ -n "$BIN" ]] || die "scalegpt-data not found: build it (cmake --preset cpu && cmake --build build/cpu --target scalegpt-data), or pass --bin PATH / set SCALEGPT_DATA_BIN"
[[ -x "$BIN" ]] || die "'$BIN' is not an executable program"

if [[ -n "$FROM" ]]; then
  [[ -f "$FROM" ]] || die "local copy '$FROM' does not exist"
  got="$(sha256_of "$FROM")"
  [[ "$got" == "$SHA256" ]] || die "checksum mismatch for '$FROM': expected $SHA256, got $got"
  INPUT="$FROM"
  echo "using local copy $FROM (SHA-256 verified)"
  mkdir -p "$OUT" || die "cannot create '$OUT'"
else
  mkdir -p "$OUT" || die "cannot create '$OUT'"
  INPUT="$OUT/input.txt"
  if [[ -f "$INPUT" ]]; then
    got="$(sha256_of "$INPUT")"
    [[ "$got" == "$SHA256" ]] || die "'$INPUT' exists but its checksum is $got, expected $SHA256; move it away to download again"
    echo "reusing $INPUT (SHA-256 verified)"
  else
    TMP="$(mktemp "$OUT/input.txt.download.XXXXXX")"
    trap 'rm -f "$TMP"' EXIT
    echo "downloading $URL"
    if command -v curl >/dev/null 2>&1; then
      curl -fL --retry 3 --connect-timeout 20 -o "$TMP" "$URL" || die "download failed: $URL"
    elif command -v wget >/dev/null 2>&1; then
      wget -q -O "$TMP" "$URL" || die "download failed: $URL"
    else
      die "neither curl nor wget is installed; download $URL yourself and pass --from FILE"
    fi
    got="$(sha256_of "$TMP")"
    [[ "$got" == "$SHA256" ]] || die "checksum mismatch for the download of $URL: expected $SHA256, got $got (the download was discarded)"
    mv "$TMP" "$INPUT"
    trap - EXIT
    echo "saved $INPUT (SHA-256 verified)"
  fi
fi

"$BIN" tokenize --in "$INPUT" --out "$OUT" --val-fraction "$VAL_FRACTION"
"$BIN" info "$OUT/train.bin" --show 80
