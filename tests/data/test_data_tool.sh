#!/usr/bin/env bash
# End-to-end check of scalegpt-data and datasets/tinyshakespeare.sh (no network, no shared files).
# Usage: test_data_tool.sh /path/to/scalegpt-data /path/to/repo
set -euo pipefail
BIN="$1"
ROOT="$2"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# synth: 10000 bytes split 9000 / 1000, u8 tokens, so each file is 64 + n bytes.
"$BIN" synth --out "$WORK/syn" --bytes 10000 --seed 3 >/dev/null
[[ $(stat -c %s "$WORK/syn/train.bin") == 9064 ]] || fail "train.bin size"
[[ $(stat -c %s "$WORK/syn/val.bin") == 1064 ]] || fail "val.bin size"
"$BIN" info "$WORK/syn/train.bin" | grep -q "tokens      9000" || fail "info token count"

# tokenize: the validation split is the end of the text.
printf 'abcdefghij' > "$WORK/in.txt"
"$BIN" tokenize --in "$WORK/in.txt" --out "$WORK/tok" --val-fraction 0.2 >/dev/null
[[ "$(tail -c 2 "$WORK/tok/val.bin")" == "ij" ]] || fail "val split is not the last fraction"
[[ "$(tail -c 8 "$WORK/tok/train.bin")" == "abcdefgh" ]] || fail "train split"

# Errors: one line naming the problem, exit status 1.
if "$BIN" info "$WORK/missing.bin" 2>"$WORK/err"; then fail "info of a missing file succeeded"; fi
grep -q "missing.bin" "$WORK/err" || fail "error does not name the file"
head -c 100 "$WORK/syn/train.bin" > "$WORK/short.bin"
if "$BIN" info "$WORK/short.bin" 2>"$WORK/err"; then fail "info of a truncated file succeeded"; fi
grep -q "truncated" "$WORK/err" || fail "truncation not reported"
if "$BIN" tokenize --in "$WORK/in.txt" --out "$WORK/x" --val-fraction 1.5 2>/dev/null; then fail "bad fraction accepted"; fi

# The download script rejects a file with the wrong checksum and keeps what was there.
mkdir -p "$WORK/ts"
echo keep > "$WORK/ts/train.bin"
echo "not shakespeare" > "$WORK/fake.txt"
if SCALEGPT_TINYSHAKESPEARE_URL="file://$WORK/fake.txt" bash "$ROOT/datasets/tinyshakespeare.sh" \
     --out "$WORK/ts" --bin "$BIN" >/dev/null 2>"$WORK/err"; then fail "checksum mismatch accepted"; fi
grep -q "checksum mismatch" "$WORK/err" || fail "mismatch not reported"
[[ "$(cat "$WORK/ts/train.bin")" == keep ]] || fail "existing file was touched"
[[ $(ls "$WORK/ts") == train.bin ]] || fail "the rejected download was left behind"
if bash "$ROOT/datasets/tinyshakespeare.sh" --from "$WORK/fake.txt" --out "$WORK/ts" --bin "$BIN" 2>/dev/null; then
  fail "--from with a wrong checksum accepted"
fi
echo "all data tool checks passed"
