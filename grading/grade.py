#!/usr/bin/env python3
"""Grade a ScaleGPT submission: build it in a pristine copy of the course, run every graded test the
way `make test` runs it, in a sandbox, and score it from authenticated results (never from output).

    grade.py                                  grade this tree's lessons/ (what `make grade` runs)
    grade.py --submission work.zip            grade a directory, .zip or .tar.gz
    grade.py --lessons 04 --submission DIR    grade one lesson (the submission may hold only its files)
    grade.py --results results.json --junit junit.xml     also write Gradescope's and JUnit's files

What it guarantees, and how, is in grading/README.md (threat model). In short:
  * every submission is built in a fresh copy of the course (a new folder, deleted afterwards);
  * the submission's code is compiled and run as an unprivileged user (when the grader is root),
    inside a new PID and mount namespace, with the hidden tests' sources unreadable and resource
    limits; every process a test starts is gone when the test is over;
  * a test passes only when the grader's reporter, linked into the test binary, wrote a result
    for exactly that test, on every rank, authenticated with a key made for that run;
  * multi-rank tests run under mpirun at each rank count ctest registers, with time limits;
  * a submission that calls what its lesson asks it to write, or what the sandbox forbids, loses
    those points (grading/lint.py).
"""
import argparse
import hashlib
import html
import json
import os
import pathlib
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lint  # noqa: E402

GRADER_USER = "sgpt-grader"
DEFAULT_LIMITS = {"memory_mb": 4096, "processes": 256, "open_files": 1024, "output_mb": 64,
                  "compile_s": 900, "job_memory_mb": 6144}
PAGE = os.sysconf("SC_PAGE_SIZE")
OUTPUT_SHOWN = 6000  # characters of a test's output kept in the results


def log(*a):
    print(*a, flush=True)


# ---- the submission -----------------------------------------------------------------------------------
def extract(sub, dest):
    sub = pathlib.Path(sub)
    if sub.is_dir():
        return sub
    dest.mkdir()
    name = sub.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(sub) as z:
            for m in z.infolist():  # no absolute paths or '..' escapes
                p = pathlib.PurePosixPath(m.filename)
                if p.is_absolute() or ".." in p.parts:
                    continue
                z.extract(m, dest)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(sub) as t:
            t.extractall(dest, filter="data")
    else:
        sys.exit(f"grade.py: {sub} is not a directory, .zip or .tar.gz")
    return dest


def find_student_file(root, lesson_dir, fname):
    """The submission's copy of lessons/<lesson_dir>/<fname>, or None (regular files only)."""
    cands = [p for p in root.rglob(fname)
             if p.is_file() and not p.is_symlink() and "build" not in p.relative_to(root).parts]
    for pref in (f"lessons/{lesson_dir}/{fname}", f"{lesson_dir}/{fname}"):
        hits = [p for p in cands if p.as_posix().endswith(pref)]
        if hits:
            return sorted(hits, key=lambda p: len(p.parts))[0]
    return cands[0] if len(cands) == 1 else None


# ---- the pristine course copy ---------------------------------------------------------------------------
EXCLUDE = ("build/", ".git/", "solutions/", "grading/hidden/", "grading/gradescope/")


def course_files(course):
    if (course / ".git").exists():
        out = subprocess.run(["git", "-C", str(course), "ls-files", "--cached", "--others", "--exclude-standard",
                              "-z"], capture_output=True)
        if out.returncode == 0:
            files = [f for f in out.stdout.decode().split("\0") if f]
            return [f for f in files if not f.startswith(EXCLUDE) and (course / f).is_file()]
    files = []
    for d, dirs, fs in os.walk(course):
        rel = pathlib.Path(d).relative_to(course).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirs[:] = [x for x in dirs if not (rel + x + "/").startswith(EXCLUDE)]
        files += [rel + f for f in fs if not (rel + f).startswith(EXCLUDE)]
    return files


def sync_tree(src_root, files, dest, mode=0o644):
    """Copies `files` into dest, rewriting only what changed (so a kept build stays incremental) and
    deleting files that are not in the list."""
    want = set(files)
    for f in files:
        s, d = src_root / f, dest / f
        data = s.read_bytes()
        if d.exists() and not d.is_symlink() and d.read_bytes() == data:
            continue
        d.parent.mkdir(parents=True, exist_ok=True)
        if d.exists() or d.is_symlink():
            d.unlink()
        d.write_bytes(data)
        os.chmod(d, mode | (0o111 if os.access(s, os.X_OK) else 0))
    for d in list(dest.rglob("*")) if dest.exists() else []:
        if (d.is_file() or d.is_symlink()) and d.relative_to(dest).as_posix() not in want:
            d.unlink()


# ---- who runs the untrusted parts -----------------------------------------------------------------------
def grader_identity():
    """(uid, gid) of the unprivileged user that compiles and runs submissions, or None when we are not
    root (then everything runs as ourselves: a student grading their own work)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(GRADER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", GRADER_USER], capture_output=True)
        try:
            pw = pwd.getpwnam(GRADER_USER)
        except KeyError:
            pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def processes_of(uid):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                pids.append(int(d))
                            break
            except (OSError, ValueError):
                pass
    return pids


def kill_user(uid, wait_s=10.0):
    """Kills whatever still runs as the grader user (nothing should) and waits until it is gone."""
    end = time.time() + wait_s
    while True:
        pids = processes_of(uid)
        if not pids or time.time() > end:
            return pids
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def job_processes(root):
    """{pid: resident bytes} of `root` and every process below it (a parent-pid walk of /proc: the PID
    namespace's processes, daemons in their own sessions and orphans that came back to sandbox.py
    included; threads share their process's memory and are not listed)."""
    parent, rss = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # fields 3.. of proc(5): state, ppid, ...
                parent[int(d)], rss[int(d)] = int(fields[1]), int(fields[21]) * PAGE
            except (OSError, IndexError, ValueError):
                pass
    children = {}
    for pid, pp in parent.items():
        children.setdefault(pp, []).append(pid)
    job, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in job:
            continue
        job[pid] = rss.get(pid, 0)
        todo += children.get(pid, [])
    return job


class Sandbox:
    """Runs untrusted commands (see sandbox.py) and reads back what they leave."""

    def __init__(self, run_dir, ident, masks, limits, threads):
        self.run_dir, self.ident, self.masks, self.limits = run_dir, ident, masks, limits
        self.threads = threads
        self.count = 0
        self.unshare = ident is not None and shutil.which("unshare") is not None and self._unshare_works()
        # A private /tmp and /dev/shm per run (nothing left there for the next submission to find),
        # unless the grading folder itself lives in /tmp.
        self.private = [p for p in ("/tmp", "/dev/shm") if not run_dir.is_relative_to(p)]

    def _unshare_works(self):
        r = subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "true"],
                           capture_output=True)
        return r.returncode == 0

    def owned_dir(self, path, mode=0o700):
        path.mkdir(parents=True, exist_ok=True)
        if self.ident:
            os.chown(path, *self.ident)
        os.chmod(path, mode)
        return path

    def base_env(self):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": self.threads, "OMP_WAIT_POLICY": "PASSIVE", "CCACHE_DISABLE": "1",
               "TMPDIR": "/tmp"}
        if os.geteuid() != 0 and "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]
        return env

    def run(self, argv, cwd, env, timeout, rlimits, watch=None, idle_limit=None, umask=0o077):
        """Runs argv in the sandbox. Returns dict(rc, timed_out, idle, memory, output, seconds).
        watch: a folder whose growth counts as progress; no growth for idle_limit seconds = a hang.
        The whole job (every process below the sandbox, however many) may hold at most the limit
        job_memory_mb resident: polled every 0.1 s, the job is killed when it holds more (memory)."""
        self.count += 1
        n = self.count
        out_path = self.run_dir / "logs" / f"{n}.out"
        spec_path = self.run_dir / "logs" / f"{n}.spec.json"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec = {"argv": argv, "env": env, "cwd": str(cwd), "rlimits": rlimits,
                "uid": self.ident[0] if self.ident else None, "gid": self.ident[1] if self.ident else None,
                "masks": [str(m) for m in self.masks] if self.unshare else [], "umask": umask,
                "private": self.private if self.unshare else []}
        spec_path.write_text(json.dumps(spec))
        os.chmod(spec_path, 0o600)
        cmd = [sys.executable, "-I", str(HERE / "sandbox.py"), str(spec_path)]
        if self.unshare:
            cmd = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--"] + cmd
        t0 = time.time()
        with open(out_path, "wb") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
            timed_out = idle = False
            memory = 0  # the job's resident bytes when it was killed for them
            job_bytes = self.limits["job_memory_mb"] << 20
            last_size, last_change = -1, t0
            while True:
                try:
                    p.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                job = job_processes(p.pid)
                if sum(job.values()) > job_bytes:
                    memory = sum(job.values())
                    for pid in job:  # the whole job at once, not only what the process group reaches
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
                    p.wait()
                    break
                now = time.time()
                if watch is not None and idle_limit:
                    size = sum(f.stat().st_size for f in watch.iterdir()) if watch.exists() else 0
                    if size != last_size:
                        last_size, last_change = size, now
                    elif now - last_change > idle_limit:
                        idle = True
                if now - t0 > timeout or idle:
                    timed_out = True
                    os.killpg(p.pid, signal.SIGKILL)  # unshare (its PID 1 dies with it) or sandbox.py
                    p.wait()
                    break
        if self.ident:
            left = kill_user(self.ident[0])
            if left:
                log(f"grade.py: warning: processes {left} of the grader user survived")
        elif timed_out or memory:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        size = out_path.stat().st_size
        with open(out_path, "rb") as f:
            if size > 2 * OUTPUT_SHOWN:
                head = f.read(OUTPUT_SHOWN // 3)
                f.seek(size - OUTPUT_SHOWN)
                data = head + f"\n... ({size} bytes of output, cut) ...\n".encode() + f.read()
            else:
                data = f.read()
        if memory:
            data += (f"\ngrade.py: the job was killed: its processes held {memory >> 20} MiB, more than its "
                     f"limit of {self.limits['job_memory_mb']} MiB\n").encode()
        return dict(rc=p.returncode, timed_out=timed_out, idle=idle, memory=memory,
                    output=data.decode(errors="replace"), seconds=time.time() - t0)

    def rlimits(self, time_limit):
        lim = self.limits
        r = {"AS": lim["memory_mb"] << 20, "NOFILE": lim["open_files"], "FSIZE": lim["output_mb"] << 20,
             "CPU": int(4 * time_limit) + 10, "CORE": 0}
        if self.ident:  # RLIMIT_NPROC counts every process of the user: only meaningful for our own user
            r["NPROC"] = lim["processes"]
        return r


def lint_objects(bdir, d, num):
    """The student's files compiled without optimisation for grading/lint.py (cmake: lessonNN_lint)."""
    return sorted((bdir / "lessons" / d / "CMakeFiles" / f"lesson{num}_lint.dir").rglob("*.o"))


# ---- authenticated reports ------------------------------------------------------------------------------
def read_reports(folder, key):
    """{rank: {"results": {test: PASS|FAIL|SKIP}, "started": [tests], "ended": bool, "bad": str|None}}.
    Lines are accepted in order while their seq and MAC are right; the first bad line ends the file."""
    ranks = {}
    if not folder.exists():
        return ranks
    for f in sorted(folder.iterdir()):
        try:
            fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                continue
            data = fh.read(1 << 20).decode(errors="replace")
        info = {"results": {}, "started": [], "ended": False, "bad": None}
        rank = None
        for seq, line in enumerate(data.split("\n")):
            parts = line.split(" ")
            if len(parts) != 5:
                if line:
                    info["bad"] = f"line {seq}: malformed"
                break
            body, mac = " ".join(parts[:4]), parts[4]
            ok = hashlib.sha256(f"{key}|{body}".encode()).hexdigest() == mac
            if not ok or parts[0] != str(seq) or (rank is not None and parts[1] != rank):
                info["bad"] = f"line {seq}: not authentic"
                break
            rank, event, name = parts[1], parts[2], parts[3]
            if event == "START":
                info["started"].append(name)
            elif event in ("PASS", "FAIL", "SKIP"):
                info["results"][name] = event
            elif event == "END":
                info["ended"] = True
        if rank is None:
            continue
        r = int(rank)
        if r in ranks:  # two processes claim one rank: trust neither
            ranks[r]["bad"] = "two reports for one rank"
            ranks[r]["results"] = {}
        else:
            ranks[r] = info
    return ranks


# ---- the build ---------------------------------------------------------------------------------------------
def trusted(cmd, cwd=None, env=None, timeout=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def tail(text, n=4000):
    return text if len(text) <= n else "...\n" + text[-n:]


def build_errors(text, n=4000):
    """A failed build's output for people: from its first failed step on (the compiler's first
    message is the one that helps), without ninja's FAILED lines and the commands (object paths
    and flags), cut to about n characters; the whole tail when no step is marked FAILED."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("FAILED:")), None)
    if first is None:
        return tail(text, n)
    keep, skip_command = [], False
    for line in lines[first:]:
        if line.startswith("FAILED:"):
            skip_command = True  # ninja prints the command that failed on the next line
        elif skip_command:
            skip_command = False
        else:
            keep.append(line)
    out = "\n".join(keep)
    return out if len(out) <= n else out[:n] + "\n... (cut)"


def ctest_tests(bdir):
    """ctest's own list of tests (no test binary runs: graded builds register binaries, not discovered
    tests): {binary name: [{"np": n, "command": [...], "timeout": s, "env": {...}}]}."""
    rc, out = trusted(["ctest", "--test-dir", str(bdir), "--show-only=json-v1"])
    if rc != 0:
        return {}
    j = json.loads(out[out.index("{"):])
    by_bin = {}
    for t in j.get("tests", []):
        cmd = t.get("command") or []
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        labels = props.get("LABELS", [])
        binary = next((pathlib.Path(c).name for c in cmd if re.fullmatch(r"lesson\d\d_(hidden_)?tests",
                                                                          pathlib.Path(c).name)), None)
        if binary is None:
            continue
        env = {}
        for e in props.get("ENVIRONMENT", []):
            k, _, v = e.partition("=")
            env[k] = v
        np_ = int(props.get("PROCESSORS", 1)) if "mpi" in labels else 1
        by_bin.setdefault(binary, []).append({"np": np_, "command": cmd, "timeout": float(props.get("TIMEOUT", 1500)),
                                              "env": env, "mpi": "mpi" in labels})
    for v in by_bin.values():
        v.sort(key=lambda r: r["np"])
    return by_bin


# ---- running the graded tests ---------------------------------------------------------------------------
class Runner:
    def __init__(self, sandbox, run_dir):
        self.sb, self.run_dir = sandbox, run_dir
        self.n = 0

    def launch(self, argv, extra_env, timeout, idle_limit=None):
        self.n += 1
        d = self.run_dir / "tests" / str(self.n)
        d.mkdir(parents=True)
        cwd = self.sb.owned_dir(d / "cwd")
        rep = self.sb.owned_dir(d / "report")
        key = secrets.token_hex(32)
        env = dict(self.sb.base_env(), **extra_env, SGPT_GRADE_KEY=key, SGPT_GRADE_REPORT=str(rep))
        r = self.sb.run(argv, cwd, env, timeout, self.sb.rlimits(timeout), watch=rep, idle_limit=idle_limit)
        r["ranks"] = read_reports(rep, key)
        return r


def describe(v, r, name, np_):
    """Why a test failed, for people (the verdict itself is already made)."""
    at = f" at {np_} ranks" if np_ > 1 else ""
    if r.get("memory"):
        return f"killed: used more than the job's memory limit ({r['memory'] >> 20} MiB resident){at}"
    if r["timed_out"]:
        return "timed out" + (" (deadlock?)" if np_ > 1 else "") + at
    if "not implemented: lesson" in slice_output(r["output"], name):
        return "not implemented"
    rc = r["rc"]
    if isinstance(rc, int) and rc > 128:
        try:
            return f"crashed ({signal.Signals(rc - 128).name}){at}"
        except ValueError:
            pass
    bad = [i["bad"] for i in r["ranks"].values() if i["bad"]]
    if bad:
        return "report rejected (" + bad[0] + ")"
    if v is None:
        return "no authenticated result" + (" (exit status 0)" if rc == 0 else f" (exit status {rc})")
    return "failed" + at


def slice_output(out, name):
    """The part of a batch's output about one test (for people only; verdicts never come from it).
    The output of a run of one test is kept whole (what came before its [ RUN ] line counts)."""
    if out.count("[ RUN      ]") <= 1:
        return tail(out, OUTPUT_SHOWN)
    i = out.find(f"[ RUN      ] {name}")
    if i < 0:
        return tail(out, OUTPUT_SHOWN)
    j = out.find("[ RUN      ]", i + 10)
    return tail(out[i:j if j > 0 else len(out)], OUTPUT_SHOWN)


def verdict_of(r, name, np_):
    """'PASS', 'SKIP', 'FAIL' or None (no result from some rank: the test did not finish)."""
    got = [r["ranks"].get(k, {}).get("results", {}).get(name) for k in range(np_)]
    if any(g is None for g in got) or len(r["ranks"]) > np_:
        return None
    if all(g == "PASS" for g in got):
        return "PASS"
    if all(g == "SKIP" for g in got):
        return "SKIP"
    return "FAIL"


def run_single(runner, entry, tests, limit_of):
    """One process per test (how ctest runs a single-process lesson's discovered tests)."""
    res = {}
    for t in tests:
        tl = min(entry["timeout"], limit_of(t))
        r = runner.launch(entry["command"] + [f"--gtest_filter={t['name']}", "--gtest_color=no"], entry["env"], tl)
        v = verdict_of(r, t["name"], 1)
        ended = all(i["ended"] for i in r["ranks"].values()) and r["ranks"]
        if v == "PASS" and (r["rc"] != 0 or not ended):
            v = "FAIL"  # it passed, then the program failed (exit status, a crash at exit)
        res[t["name"]] = (v, r, r["seconds"])
    return res


def run_batch(runner, entry, tests, limit_of):
    """Every test of a multi-rank binary in one mpirun at this rank count (how ctest runs it); a test
    that hangs or crashes the job is failed and the run goes on with the tests after it."""
    res, remaining = {}, list(tests)
    np_ = entry["np"]
    while remaining:
        idle = max(limit_of(t) for t in remaining)
        filt = ":".join(t["name"] for t in remaining)
        r = runner.launch(entry["command"] + [f"--gtest_filter={filt}", "--gtest_color=no"], entry["env"],
                          entry["timeout"], idle_limit=idle)
        done = []
        for t in remaining:
            v = verdict_of(r, t["name"], np_)
            if v is not None:
                res[t["name"]] = (v, r, 0.0)
                done.append(t)
        started = [n for i in r["ranks"].values() for n in i["started"] if n not in res]
        stuck = [t for t in remaining if t not in done and t["name"] in started]
        for t in stuck[:1]:  # the test the job was in when it ended
            res[t["name"]] = ("FAIL", r, 0.0)
            done.append(t)
        if not done:
            for t in remaining:
                res[t["name"]] = (None, r, 0.0)
            break
        remaining = [t for t in remaining if t not in done]
    return res


# ---- main ---------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--course", type=pathlib.Path, default=HERE.parent, help="course tree (default: this one)")
    ap.add_argument("--submission", help="directory, .zip or .tar.gz (default: the course's lessons/)")
    ap.add_argument("--build-dir", "--work-dir", dest="work_dir", type=pathlib.Path,
                    help="where grading runs happen: each submission gets a new folder inside it, deleted "
                         "afterwards (default: a temporary folder; without --submission: <course>/build/grade, "
                         "kept, so grading your own work again is incremental)")
    ap.add_argument("--hidden-dir", type=pathlib.Path, help="hidden tests (default: <course>/grading/hidden)")
    ap.add_argument("--points", type=pathlib.Path, help="default: <course>/grading/points.json")
    ap.add_argument("--lessons", nargs="*", help="only these lesson numbers, e.g. 01 03")
    ap.add_argument("--tests", help="only the declared tests whose name matches this regex (CI, red team)")
    ap.add_argument("--time-limit", type=float, help="cap every test's time limit at this many seconds")
    ap.add_argument("--job-memory-mb", type=int,
                    help="resident memory of one compile or test run, all its processes together (default: "
                         "points.json's limits.job_memory_mb, else 6144)")
    ap.add_argument("--lint", choices=["enforce", "warn"], default="enforce",
                    help="warn: report the sandbox checks of grading/lint.py without costing points (red team)")
    ap.add_argument("--results", type=pathlib.Path, help="write Gradescope results.json here")
    ap.add_argument("--junit", type=pathlib.Path, help="write JUnit XML here")
    ap.add_argument("--summary", type=pathlib.Path, help="write the per-test results (JSON) here")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--threads", default="2", help="OMP_NUM_THREADS of each single-process test")
    ap.add_argument("--keep", action="store_true", help="keep the grading folder")
    ap.add_argument("--run-dir", type=pathlib.Path,
                    help="grade in exactly this folder (emptied first, kept afterwards): CI then runs ctest and "
                         "builds the drivers in <run-dir>/build")
    ap.add_argument("--expect", choices=["full", "zero"], help="exit 1 unless every graded test passes / fails")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a test binary holds a test that points.json does not declare, or the reverse")
    ap.add_argument("--cmake-arg", action="append", default=[], help="extra -D option for the configure step")
    a = ap.parse_args()

    course = a.course.resolve()
    points_file = (a.points or course / "grading" / "points.json").resolve()
    points = json.loads(points_file.read_text())
    hidden_src = (a.hidden_dir or course / "grading" / "hidden").resolve()
    base_limit = points.get("time_limit_s", 60)
    limits = dict(DEFAULT_LIMITS, **points.get("limits", {}))
    if a.job_memory_mb:
        limits["job_memory_mb"] = a.job_memory_mb
    lessons = [l for l in points["lessons"] if not a.lessons or l["number"] in a.lessons]
    lessons = [l for l in lessons if (course / "lessons" / f"{l['number']}_{l['slug']}").is_dir()]
    if a.lessons and not lessons:
        sys.exit(f"grade.py: no lesson {' '.join(a.lessons)} in {course}")
    test_rx = re.compile(a.tests) if a.tests else None

    def limit_of(t):
        tl = float(t.get("time_limit_s", base_limit))
        return min(tl, a.time_limit) if a.time_limit else tl

    ident = grader_identity()
    if a.results and ident:
        rd = a.results.resolve().parent
        if rd.exists() and (rd.stat().st_mode & 0o002 or rd.stat().st_uid != 0):
            log(f"grade.py: warning: {rd} is writable by others; put results where only root can write")
    fresh = a.submission is not None
    if a.run_dir:
        run_dir = a.run_dir.resolve()
        if run_dir.exists():
            if ident:
                kill_user(ident[0])
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        a.keep = True
    elif fresh:
        parent = a.work_dir.resolve() if a.work_dir else pathlib.Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        run_dir = pathlib.Path(tempfile.mkdtemp(prefix="sgpt-grade-", dir=parent))
    else:
        run_dir = (a.work_dir or course / "build" / "grade").resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(run_dir / "tests", ignore_errors=True)
        shutil.rmtree(run_dir / "logs", ignore_errors=True)
    os.chmod(run_dir, 0o755)
    t_start = a.t_start = time.time()
    a.grading_dir = run_dir
    try:
        status = grade(a, course, points, points_file, hidden_src, lessons, limits, limit_of, test_rx, ident,
                       run_dir)
    finally:
        if ident:
            kill_user(ident[0])
        if fresh and not a.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    log(f"(graded in {time.time() - t_start:.0f} s)")
    return status


def grade(a, course, points, points_file, hidden_src, lessons, limits, limit_of, test_rx, ident, run_dir):
    # 1. The submission's declared files, nothing else, into a staging folder (root only).
    sub_root = extract(a.submission, run_dir / "upload") if a.submission else course / "lessons"
    stage = run_dir / "submission"
    notes = []
    for l in lessons:
        d = f"{l['number']}_{l['slug']}"
        for f in l["student_files"]:
            src = find_student_file(pathlib.Path(sub_root), d, f)
            if src is None:
                src = course / "lessons" / d / f
                notes.append(f"lesson {l['number']}: {f} is not in the submission; graded with the stub")
            (stage / d).mkdir(parents=True, exist_ok=True)
            if not (stage / d / f).exists() or (stage / d / f).read_bytes() != src.read_bytes():
                shutil.copyfile(src, stage / d / f)  # unchanged files keep their time: a kept build is incremental
    for n in notes:
        log("note:", n)

    # 2. A pristine copy of the course and of the selected lessons' hidden tests: root-owned; the
    #    hidden sources 0600, so the unprivileged compile and tests cannot read them.
    ccopy = run_dir / "course"
    sync_tree(course, course_files(course), ccopy)
    shutil.copyfile(points_file, ccopy / "grading" / "points.json")
    hidden = run_dir / "hidden"
    shutil.rmtree(hidden, ignore_errors=True)
    hidden.mkdir()
    for l in lessons:
        d = f"{l['number']}_{l['slug']}"
        if (hidden_src / d).is_dir():
            for p in sorted((hidden_src / d).rglob("*")):
                if p.is_file():
                    q = hidden / d / p.relative_to(hidden_src / d)
                    q.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(p, q)
                    os.chmod(q, 0o600)
    # The reference of every earlier lesson a graded one builds on (points.json "builds_on": lesson 09
    # runs on lesson 08's split), from solutions/, hidden like the hidden tests: its objects are built
    # by us (step 3), before any student code runs. Without solutions/ (a student grading their own
    # release) CMake falls back to the course copy's lessons/, i.e. the student's own earlier lesson.
    reference = run_dir / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    by_number = {l["number"]: l for l in points["lessons"]}
    deps, todo = [], [d for l in lessons for d in l.get("builds_on", [])]
    while todo:
        n = todo.pop()
        if n not in deps:
            deps.append(n)
            todo += by_number[n].get("builds_on", [])
    for n in sorted(deps):
        d = f"{n}_{by_number[n]['slug']}"
        for f in by_number[n]["student_files"]:
            if (course / "solutions" / d / f).is_file():
                (reference / d).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(course / "solutions" / d / f, reference / d / f)
                os.chmod(reference / d / f, 0o600)
    if ident:
        subprocess.run(["chown", "-R", "0:0", str(ccopy), str(hidden), str(stage)], check=True)
        subprocess.run(["chmod", "-R", "go-w", str(ccopy), str(stage)], check=True)

    # What the untrusted commands must not see: the course we were given (its hidden tests,
    # solutions) unless the run folder is inside it, and the hidden tests' folder.
    masks = []
    if run_dir.is_relative_to(course):
        masks += [course / "grading" / "hidden", course / "solutions"]
    else:
        masks.append(course)
    if not run_dir.is_relative_to(hidden_src) and not any(hidden_src.is_relative_to(m) for m in masks):
        masks.append(hidden_src)
    if a.submission and pathlib.Path(a.submission).resolve().is_dir():
        masks.append(pathlib.Path(a.submission).resolve())  # the upload itself: only the staged copy counts
    sandbox = Sandbox(run_dir, ident, masks, limits, a.threads)
    if ident and not sandbox.unshare:
        log("grade.py: warning: unshare --pid --mount does not work here (no CAP_SYS_ADMIN?): tests run without "
            "PID and mount namespaces; processes of the test user are still killed after each test")
        for m in masks:
            if m.exists() and m.stat().st_mode & 0o005:
                log(f"grade.py: warning: {m} is readable by the test user and cannot be hidden here: chmod 700 it")

    # 3. Configure and build what does not depend on the submission (trusted, as ourselves).
    bdir = run_dir / "build"
    env = dict(os.environ)
    cfg = ["cmake", "-S", str(ccopy), "-B", str(bdir), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
           f"-DSCALEGPT_LESSONS_FROM={stage}", f"-DSCALEGPT_HIDDEN_TESTS_DIR={hidden}",
           f"-DSCALEGPT_POINTS_FILE={ccopy / 'grading' / 'points.json'}", "-DSCALEGPT_CUDA=OFF",
           "-DSCALEGPT_GRADING=ON", "-DSCALEGPT_BUILD_TESTS=ON",
           "-DSCALEGPT_LESSONS_ONLY=" + ";".join(l["number"] for l in lessons),
           f"-DSCALEGPT_REFERENCE_DIR={reference if reference.is_dir() else ''}"] + a.cmake_arg
    if shutil.which("ccache") and os.environ.get("SGPT_GRADE_CCACHE", "1") != "0":
        cfg.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
        env["CCACHE_BASEDIR"] = str(run_dir)
    if ident and bdir.exists():
        subprocess.run(["chown", "-R", "0:0", str(bdir)], check=True)
    t0 = time.time()
    rc, out = trusted(cfg, env=env)
    log(f"grade.py: configured a pristine copy of the course in {time.time() - t0:.0f} s ({run_dir})")
    if rc != 0:
        log(tail(out))
        sys.exit("grade.py: configuring the course tree failed (not the submission's fault)")
    rc, out = trusted(["ninja", "-C", str(bdir), "-t", "targets", "all"])
    objs = [line.split(":")[0] for line in out.splitlines()
            if re.search(r"/lesson\d\d_(hidden_)?tests\.dir/.*\.o:", line)]
    refs = [f"lesson{n}_reference" for n in sorted(deps) if f"lesson{n}_reference:" in out]
    # A lesson's given code (lesson 12's lesson12_given) is the course's, not the submission's.
    given = [f"lesson{l['number']}_given" for l in lessons if f"lesson{l['number']}_given:" in out]
    lint_targets = {line.split(":")[0] for line in out.splitlines() if re.match(r"lesson\d\d_lint:", line)}
    pre = (["sgpt"] + [t for t in ("sgpt_grade_reporter", "sgpt_gtest_mpi_main") if f"{t}:" in out] + refs + given
           + objs)
    rc, out = trusted(["ninja", "-C", str(bdir), "-j", str(a.jobs)] + pre, env=env)
    if rc != 0:
        log(tail(out))
        sys.exit("grade.py: building the course library and tests failed (not the submission's fault)")
    log(f"grade.py: built the course library and test objects in {time.time() - t0:.0f} s")
    t0 = time.time()

    # 4. Compile the submission, unprivileged, in the sandbox; then nothing in the build is writable
    #    by the tests (they cannot replace a test binary or the reporter).
    if ident:
        subprocess.run(["chown", "-R", f"{ident[0]}:{ident[1]}", str(bdir)], check=True)
    built, build_out, lint_out = {}, {}, {}
    for l in lessons:
        num, d = l["number"], f"{l['number']}_{l['slug']}"
        targets = [f"lesson{num}_tests"] + ([f"lesson{num}_hidden_tests"] if (hidden / d).is_dir() else [])
        for tgt in targets + [f"liblesson{num}.a"]:  # a kept build must not grade an old binary
            (bdir / "lessons" / d / tgt).unlink(missing_ok=True)
        for o in lint_objects(bdir, d, num):
            o.unlink()
        # One target at a time: the public tests' (visible) output never shows the hidden build's.
        # The lint objects (grading/lint.py) are built with the public tests.
        for tgt in targets:
            lint_target = [f"lesson{num}_lint"] if tgt == targets[0] and f"lesson{num}_lint" in lint_targets else []
            r = sandbox.run(["ninja", "-C", str(bdir), "-j", str(a.jobs), "-k", "0", tgt] + lint_target, bdir,
                            sandbox.base_env(), limits["compile_s"],
                            {"AS": 8 << 30, "NPROC": 4096, "NOFILE": 4096, "FSIZE": 2 << 30, "CORE": 0},
                            umask=0o022)
            built[tgt] = (bdir / "lessons" / d / tgt).exists() and not r["timed_out"]
            build_out[tgt] = r["output"] + ("\n(the compile timed out)" if r["timed_out"] else "")
            if not built[tgt] and not r["timed_out"] and "FAILED:" not in r["output"]:
                # Killed from outside (e.g. another grader on this machine ended the grading user's processes).
                build_out[tgt] += f"\n(the build ended with status {r['rc']} before any step failed)"
    if ident:
        subprocess.run(["chown", "-R", "0:0", str(bdir)], check=True)
        subprocess.run(["chmod", "-R", "go-w", str(bdir)], check=True)

    log(f"grade.py: compiled the submission in {time.time() - t0:.0f} s"
        + (f" as {GRADER_USER}" if ident else "") + (" in a sandbox" if sandbox.unshare else ""))

    # 5. Mechanical checks of the submission's objects.
    for l in lessons:
        num, d = l["number"], f"{l['number']}_{l['slug']}"
        lib = bdir / "lessons" / d / f"liblesson{num}.a"
        objs = lint_objects(bdir, d, num)
        if lib.exists() and not objs and l.get("forbidden"):
            log(f"lesson {num}: no lesson{num}_lint objects: the forbidden calls are read from liblesson{num}.a")
        lint_out[num] = lint.check(lib, l.get("forbidden", []), objs or None) if lib.exists() else ([], [])

    # 6. Run every declared test the way ctest runs it.
    registered = ctest_tests(bdir)
    runner = Runner(sandbox, run_dir)
    results, problems = [], []
    for l in lessons:
        num, d = l["number"], f"{l['number']}_{l['slug']}"
        sandbox_bad, task_bad = lint_out[num]
        for m in sandbox_bad:
            log(f"lesson {num}: {m}" + (" (--lint warn: not counted)" if a.lint == "warn" else ""))
        for task, m in task_bad:
            log(f"lesson {num}, task {task}: {m}")
        for group in ("public", "hidden"):
            tests = [t for t in l["tests"] if t["binary"] == group and (not test_rx or test_rx.search(t["name"]))]
            if group == "hidden" and not (hidden / d).is_dir():
                continue
            target = f"lesson{num}_tests" if group == "public" else f"lesson{num}_hidden_tests"
            entries = registered.get(target, [])
            verdicts = {t["name"]: [] for t in tests}
            why = {}
            if not built.get(target):
                for t in tests:
                    why[t["name"]] = "build failed"
            elif not entries:
                problems.append(f"lesson {num}: ctest registers no run of {target}")
                for t in tests:
                    why[t["name"]] = "not registered with ctest"
            elif sandbox_bad and a.lint == "enforce":
                for t in tests:
                    why[t["name"]] = "forbidden call"
            else:
                if a.strict:
                    strict_check(runner, entries[0], tests, target, num, group, problems)
                pending = list(tests)
                for e in entries:
                    wanted = [t for t in pending if "ranks" not in t or e["np"] in t["ranks"]]
                    if not wanted:
                        continue
                    rs = (run_batch if e["mpi"] else run_single)(runner, e, wanted, limit_of)
                    for t in wanted:
                        v, r, secs = rs[t["name"]]
                        verdicts[t["name"]].append((e["np"], v, r, secs))
                        if v not in ("PASS", "SKIP"):
                            pending.remove(t)  # failed at this rank count: no need to try others
                for t in tests:
                    nps = {e["np"] for e in entries}
                    missing = sorted(set(t.get("ranks", [])) - nps)
                    if missing:
                        problems.append(f"lesson {num}: {t['name']} declares ranks {missing}, not registered")
            for t in tests:
                r = dict(lesson=num, slug=l["slug"], group=group, name=t["name"], task=t.get("task", 0),
                         max_score=t["points"], score=0, status="failed", seconds=0.0, output="")
                vs = verdicts[t["name"]]
                if t["name"] in why:
                    r["why"] = why[t["name"]]
                    r["output"] = (f"lesson {num}: the {group} tests did not compile/link:\n" + build_errors(build_out[target])
                                   if why[t["name"]] == "build failed" else "\n".join(sandbox_bad))
                elif not vs:
                    r["why"] = "not run"
                else:
                    r["seconds"] = sum(x[3] for x in vs) or sum(x[2]["seconds"] for x in vs[-1:])
                    fails = [x for x in vs if x[1] not in ("PASS", "SKIP")]
                    if fails:
                        np_, v, rr, _ = fails[0]
                        r["why"] = describe(v, rr, t["name"], np_)
                        r["output"] = slice_output(rr["output"], t["name"])
                    elif all(x[1] == "SKIP" for x in vs):
                        r["why"] = "skipped"
                        r["output"] = slice_output(vs[-1][2]["output"], t["name"])
                    else:
                        r["status"], r["score"], r["why"] = "passed", t["points"], "ok"
                        ranks = sorted({x[0] for x in vs if x[1] == "PASS"})
                        if ranks != [1]:
                            r["why"] = "ok (ranks " + ",".join(map(str, ranks)) + ")"
                        r["output"] = slice_output(vs[-1][2]["output"], t["name"])
                    task_hits = [m for k, m in task_bad if k == int(r["task"]) or k == 0]
                    if task_hits and r["max_score"]:
                        r["status"], r["score"], r["why"] = "failed", 0, "forbidden call"
                        r["output"] = task_hits[0] + "\n\n" + r["output"]
                results.append(r)
    report(a, lessons, results, points, notes)

    status = 0
    for p in problems:
        log("grade.py --strict:" if a.strict else "grade.py:", p)
        status = 1 if a.strict else status
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


def strict_check(runner, entry, tests, target, num, group, problems):
    """Lists the binary's tests (in the sandbox: listing runs the binary) against points.json."""
    r = runner.launch([entry["command"][-1] if entry["mpi"] else entry["command"][0], "--gtest_list_tests"],
                      {}, 60)
    listed, suite = set(), None
    for line in r["output"].splitlines():
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


def atomic_write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def for_people(text, run_dir):
    """Paths of the grading folder written as the student knows them: the staged submission's files
    as lessons/..., the course copy's relative to the repository, the rest relative to the folder."""
    if not run_dir:
        return text
    # The whole path, or its tail from where sgpt's error messages shorten a file's path (check.cpp).
    at = r"[^\s\"'`]*" + re.escape(pathlib.Path(run_dir).name) + "/"
    return re.sub(at, "", re.sub(at + "course/", "", re.sub(at + "submission/", "lessons/", text)))


def report(a, lessons, results, points, notes=()):
    total = sum(r["score"] for r in results)
    max_total = sum(r["max_score"] for r in results)
    log("")
    for l in lessons:
        rs = [r for r in results if r["lesson"] == l["number"]]
        if not rs:
            continue
        log(f"== lesson {l['number']}: {l['title']} "
            f"({sum(r['score'] for r in rs)}/{sum(r['max_score'] for r in rs)}) ==")
        for task in sorted({r["task"] for r in rs}, key=int):
            tr = [r for r in rs if r["task"] == task]
            title = l["tasks"].get(str(task), "given code (not graded)")
            log(f"  task {task}: {title}  [{sum(r['score'] for r in tr)}/{sum(r['max_score'] for r in tr)}]")
            for r in tr:
                name = r["name"] + (" (hidden)" if r["group"] == "hidden" else "")
                pts = f"{r['score']}/{r['max_score']}" if r["max_score"] else "not graded"
                log(f"    {name:<52} {r['why']:<22} {pts:>10}  ({r['seconds']:.1f} s)")
        pub = [r for r in rs if r["group"] == "public"]
        hid = [r for r in rs if r["group"] == "hidden"]
        line = f"  public tests: {sum(r['score'] for r in pub)}/{sum(r['max_score'] for r in pub)}"
        if hid:
            line += f"   hidden tests: {sum(r['score'] for r in hid)}/{sum(r['max_score'] for r in hid)}"
        log(line)
        hs = l.get("hidden_summary")
        n_hidden = sum(1 for t in l["tests"] if t["binary"] == "hidden")
        if not hid and (hs or n_hidden):
            hs = hs or {"tests": n_hidden, "points": sum(t["points"] for t in l["tests"] if t["binary"] == "hidden")}
            log(f"  + {hs['tests']} hidden test(s) worth {hs['points']} point(s), run by the instructor's grader: "
                "the same tasks with other shapes, seeds, data types and rank counts")
    pub_t = sum(r["score"] for r in results if r["group"] == "public")
    pub_m = sum(r["max_score"] for r in results if r["group"] == "public")
    hid_t = sum(r["score"] for r in results if r["group"] == "hidden")
    hid_m = sum(r["max_score"] for r in results if r["group"] == "hidden")
    if hid_m:
        log(f"\nScore: {total}/{max_total}  (public {pub_t}/{pub_m}, hidden {hid_t}/{hid_m})")
    else:
        not_here = sum(l.get("hidden_summary", {}).get("points", 0) for l in lessons)
        log(f"\nScore: {total}/{max_total}  (public tests" +
            (f"; the hidden tests add {not_here} point(s) when the instructor grades)" if not_here else ")"))

    if a.summary:
        atomic_write(a.summary, json.dumps([{k: v for k, v in r.items()} for r in results], indent=1))
    if a.junit:
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
        atomic_write(a.junit, "\n".join(parts) + "\n")
        log(f"wrote {a.junit}")
    if a.results:  # last: Gradescope reads it once we exit
        # Gradescope's format (grading/README.md): hidden tests are shown once the grades are published
        # (until then Gradescope hides the total score too), and so is our stdout, which lists them.
        graded = [r for r in results if r["max_score"] > 0]
        any_hidden = any(r["group"] == "hidden" for r in graded)
        summary = list(f"note: {n}" for n in notes)
        for l in lessons:
            pub = [r for r in graded if r["lesson"] == l["number"] and r["group"] == "public"]
            hid = [r for r in graded if r["lesson"] == l["number"] and r["group"] == "hidden"]
            line = (f"lesson {l['number']} ({l['title']}): public tests "
                    f"{sum(r['score'] for r in pub)}/{sum(r['max_score'] for r in pub)} points")
            if hid:
                line += (f"; {len(hid)} hidden test(s) worth {sum(r['max_score'] for r in hid)} point(s), "
                         "shown when the grades are published")
            summary.append(line)
            broken = next((r for r in pub if r["why"] == "build failed"), None)
            if broken:
                summary.append(broken["output"])
        rd = getattr(a, "grading_dir", None)
        gs = {"score": total, "output": for_people("\n".join(summary) + "\n", rd), "visibility": "visible",
              "stdout_visibility": "after_published" if any_hidden else "visible", "tests": []}
        if getattr(a, "t_start", None):
            gs["execution_time"] = int(time.time() - a.t_start)
        count = {}
        for r in graded:
            key = (int(r["lesson"]), int(r["task"]))
            count[key] = count.get(key, 0) + 1
            gs["tests"].append({
                "name": f"lesson {r['lesson']} task {r['task']}: {r['name']}" + (" (hidden)" if r["group"] == "hidden" else ""),
                "number": f"{key[0]}.{key[1]}.{count[key]}",
                "score": r["score"], "max_score": r["max_score"], "status": r["status"],
                "output": for_people(f"{r['why']}\n\n{r.get('output', '')}", rd),
                "visibility": "after_published" if r["group"] == "hidden" else "visible"})
        atomic_write(a.results, json.dumps(gs, indent=1))
        log(f"wrote {a.results}")


if __name__ == "__main__":
    sys.exit(main())
