"""Run a command and, when it ends, end every process it left behind, and only those.

Prefect's ephemeral API server and Ray's agents can outlive the test process that started them
(reparented away from it). This wrapper makes itself a child subreaper (Linux ``prctl``), so every
orphan among its descendants is reparented to it instead of to init; when the command exits, it
walks /proc for its own descendants, sends them SIGTERM, then SIGKILL to what is left. It never
looks processes up by name, so other users' Ray or Prefect processes are never touched.

Usage: python3 .ci/reap.py COMMAND [ARGS...]   (exits with the command's status)
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def descendants(root: int) -> list[int]:
    """PIDs whose parent chain leads to ``root`` (read from /proc), children before parents' siblings."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])  # the field after "(comm)" state
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def end_descendants(grace_s: float = 10.0) -> list[int]:
    """SIGTERM every descendant, wait up to ``grace_s``, SIGKILL the rest; returns the PIDs ended."""
    me, ended = os.getpid(), []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = descendants(me)
        for pid in pids:
            try:
                os.kill(pid, sig)
                ended.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 2.0)
        while descendants(me) and time.monotonic() < deadline:
            reap_zombies()
            time.sleep(0.2)
        reap_zombies()
    return sorted(set(ended))


def reap_zombies() -> None:
    """Collect the exit status of orphans reparented to us, so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("reap.py: prctl(PR_SET_CHILD_SUBREAPER) failed; orphans may escape", file=sys.stderr)
    child = subprocess.Popen(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # pass a stop on to the command, then clean up below
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    status = child.wait()
    ended = end_descendants()
    if ended:
        print(f"reap.py: ended {len(ended)} process(es) the command left behind: {ended}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
