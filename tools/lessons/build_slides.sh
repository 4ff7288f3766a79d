#!/bin/sh
# Renders slides/NN_slug.md to build/slides/NN_slug.html with Marp, when it is installed.
set -e
cd "$(dirname "$0")/../.."
OUT=${1:-build/slides}
if command -v marp >/dev/null 2>&1; then MARP=marp
elif [ -x node_modules/.bin/marp ]; then MARP=node_modules/.bin/marp
else
  echo "slides: Marp CLI is not installed. Install it with"
  echo "    npm install -g @marp-team/marp-cli"
  echo "then run 'make slides' again (the decks are plain Markdown in slides/ meanwhile)."
  exit 0
fi
mkdir -p "$OUT"
for f in slides/[0-9][0-9]_*.md; do
  "$MARP" --html --allow-local-files "$f" -o "$OUT/$(basename "$f" .md).html"
done
echo "slides: wrote $OUT/*.html"
