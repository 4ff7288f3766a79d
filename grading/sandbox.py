#!/usr/bin/env python3
"""Starts one untrusted command for grade.py: the compile of a submission or one graded test run.

    unshare --pid --fork --kill-child --mount --mount-proc python3 sandbox.py SPEC.json   (root)
    python3 sandbox.py SPEC.json                                                            (not root)

SPEC (written by grade.py, read before anything else happens):
    argv, env, cwd          the command, its whole environment, its working directory
    uid, gid                run as this user (root only; null: stay who we are)
    rlimits                 {"AS": bytes, "NPROC": n, "NOFILE": n, "FSIZE": bytes, "CPU": s, "CORE": 0}
    umask                   of the command (default 077)
    masks                   folders hidden behind an empty, unreadable tmpfs (new mount namespace)
    private                 folders replaced by a fresh, empty tmpfs for this run only (/tmp, /dev/shm)
    cgroup                  optional cgroup-v1 folders (memory, pids) this whole run is put in

The rlimits bound each process (AS) and the test user's processes (NPROC: threads count too), not
their product: 256 processes of 4 GiB each are allowed. The bound on the whole run is grade.py's
(Sandbox.run): it adds up the resident memory of every process below this one, every 0.1 s, and
kills them all past the limit job_memory_mb — no cgroup or root needed.

Under unshare this program is PID 1 of a new PID namespace: it starts the command in a new session
as the unprivileged user, reaps every process the command leaves behind, and exits with the
command's status (128 + signal when it was killed). When PID 1 exits, the kernel kills every other
process of the namespace, and the exit completes only once they are all gone: nothing the command
started (a daemon in its own session, a fork bomb, an MPI rank) outlives this program. grade.py
kills `unshare` on a time-out, which (--kill-child) kills this PID 1, so the same holds then.
"""
import ctypes
import json
import os
import resource
import signal
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8


def mask(path, libc):
    """Mounts an empty read-only tmpfs with mode 000 over `path` (this mount namespace only)."""
    if not os.path.isdir(path):
        return
    rc = libc.mount(b"none", path.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    b"mode=000,size=4k")
    if rc != 0:
        err = ctypes.get_errno()
        sys.stderr.write(f"sandbox: cannot hide {path}: {os.strerror(err)}\n")
        sys.exit(125)


def private(path, libc):
    """A fresh, empty tmpfs at `path` (sticky, world-writable like /tmp), for this namespace only."""
    if os.path.isdir(path) and libc.mount(b"none", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                                          b"mode=1777,size=1g") != 0:
        sys.stderr.write(f"sandbox: cannot mount a private {path}: {os.strerror(ctypes.get_errno())}\n")
        sys.exit(125)


def child(spec):
    os.setsid()  # own session and process group: killpg reaches everything it starts (no PID namespace)
    for name, value in spec.get("rlimits", {}).items():
        lim = getattr(resource, "RLIMIT_" + name)
        resource.setrlimit(lim, (int(value), int(value)))
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid binary gives the rights back
    os.umask(spec.get("umask", 0o077))
    os.chdir(spec["cwd"])
    os.closerange(3, 65536)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])


def kill_descendants(pgid):
    """Without a PID namespace: kill the command's process group, then every orphan that came back to
    us as the subreaper (a daemon in its own session), until none is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    me = str(os.getpid())
    for _ in range(10000):
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[1] == me:
                            kids.append(int(d))
                except (OSError, IndexError):
                    pass
        if not kids:
            return
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    libc = ctypes.CDLL(None, use_errno=True)
    pid1 = os.getpid() == 1
    if pid1:
        for path in spec.get("masks", []):
            mask(path, libc)
        for path in spec.get("private", []):
            private(path, libc)
    for cg in spec.get("cgroup", []):
        try:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            sys.stderr.write(f"sandbox: cgroup {cg}: {e}\n")
    if not pid1:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of the command come back to us
    pid = os.fork()
    if pid == 0:
        try:
            child(spec)
        except BaseException as e:  # noqa: BLE001 - anything here means the command never started
            sys.stderr.write(f"sandbox: cannot start {spec['argv'][0]}: {e}\n")
            os._exit(126)
    status = None
    while True:  # reap the command and every orphan re-parented to us
        try:
            p, st = os.wait()
        except ChildProcessError:
            break
        if p == pid:
            status = st
            break  # PID 1: our exit kills and waits for the rest of the namespace; else kill_descendants
    if not pid1:
        kill_descendants(pid)
    if status is None:
        sys.exit(125)
    if os.WIFSIGNALED(status):
        sys.exit(128 + os.WTERMSIG(status))
    sys.exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
