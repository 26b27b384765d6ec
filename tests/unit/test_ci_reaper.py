""".ci/reap.py ends the processes a command left behind, and no other."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REAP = Path(__file__).resolve().parents[2] / ".ci" / "reap.py"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_orphans_are_ended_and_bystanders_are_not(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])  # not started under the reaper: must survive
    pids = tmp_path / "pids"
    # an orphan in the same session and one in a session of its own (as a daemon would make)
    script = f"sleep 61 & echo $! >> {pids}; setsid sleep 62 & echo $! >> {pids}; exit 3"
    try:
        out = subprocess.run(
            [sys.executable, str(REAP), "bash", "-c", script], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 3  # the command's own status
        left = [int(p) for p in pids.read_text().split()]
        assert len(left) == 2
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in left)
        assert "ended 2 process(es)" in out.stderr
        assert _alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
