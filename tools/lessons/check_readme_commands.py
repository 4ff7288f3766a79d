#!/usr/bin/env python3
"""Run the README commands that CI can run, exactly as written, and fail if one fails.

A fenced ```sh block preceded by the line `<!-- ci: run -->` is run line by line with bash from the
repository root (a line ending in a backslash continues on the next; `# comments` are dropped, as
the shell would). Other blocks (GPU commands, downloads, long runs) are documentation only.
Files the commands leave in the tree (new, untracked and not ignored) are removed afterwards.

    check_readme_commands.py                     README.md and every lessons/*/README.md
    check_readme_commands.py lessons/04_collectives/README.md
    check_readme_commands.py --list              print the commands, run nothing

It runs as whoever calls it: CI runs it as root (where a plain `mpirun` stops with "attempt to run
as root"), developers as a normal user; the commands must work for both (scripts/mpirun).
"""
import argparse
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MARK = re.compile(r"^\s*<!--\s*ci:\s*run\s*-->\s*$")


def blocks(path):
    """Yields (line number, [commands]) for every marked ```sh block of a Markdown file."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if MARK.match(lines[i]):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j >= len(lines) or not lines[j].strip().startswith("```sh"):
                raise SystemExit(f"{path}:{i + 1}: <!-- ci: run --> must come right before a ```sh block")
            cmds, cur, k = [], "", j + 1
            while k < len(lines) and not lines[k].strip().startswith("```"):
                text = lines[k]
                if cur or text.strip():
                    cur += text.rstrip()[:-1] + " " if text.rstrip().endswith("\\") else text
                    if not text.rstrip().endswith("\\"):
                        cmds.append((k + 1, cur.strip()))
                        cur = ""
                k += 1
            yield j + 1, cmds
            i = k
        i += 1


def untracked():
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard", "-z"],
                         capture_output=True, text=True).stdout
    return {f for f in out.split("\0") if f}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=pathlib.Path)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per command")
    a = ap.parse_args()
    files = [f.resolve() for f in a.files] or [ROOT / "README.md"] + sorted((ROOT / "lessons").glob("[0-9][0-9]_*/README.md"))
    before = untracked()
    failed = ran = 0
    for f in files:
        rel = f.relative_to(ROOT)
        for line, cmds in blocks(f):
            for n, cmd in cmds:
                if a.list:
                    print(f"{rel}:{n}: {cmd}")
                    continue
                t0 = time.time()
                try:
                    r = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, errors="replace", timeout=a.timeout)
                    rc, out = r.returncode, r.stdout + r.stderr
                except subprocess.TimeoutExpired:
                    rc, out = "timeout", ""
                ran += 1
                status = "ok" if rc == 0 else f"FAILED ({rc})"
                print(f"{status:>12}  {time.time() - t0:6.1f} s  {rel}:{n}: {cmd}", flush=True)
                if rc != 0:
                    failed += 1
                    print("\n".join("      | " + l for l in out.strip().splitlines()[-25:]))
    for f in sorted(untracked() - before):  # what the commands wrote into the tree (loss.svg, ...)
        (ROOT / f).unlink(missing_ok=True)
    if not a.list:
        print(f"check_readme_commands: {ran} commands, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
