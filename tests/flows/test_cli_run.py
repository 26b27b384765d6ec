"""`pathatlas run` as a scheduled job sees it: a failure is a few plain lines naming the stage
and the job, with the full log (tracebacks included) in a file beside the store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import yaml

FAILING_MODEL = textwrap.dedent(
    """
    import torch

    class FailsOnBigBatches(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(), torch.nn.Linear(4, 4),
            )

        def forward(self, x):
            if x.shape[0] > 2:  # preflight's batch of two passes; a shard of four does not
                raise RuntimeError("simulated failure inside the model\\nwith a second line")
            return self.net(x)

    def build():
        return FailsOnBigBatches()
    """
)


def test_a_failed_run_is_a_few_plain_lines_and_a_log_file(tmp_path):
    (tmp_path / "failing_model.py").write_text(FAILING_MODEL)
    cfg = {
        "dataset": {"kind": "synthetic", "n_samples": 8, "image_size": 48, "seed": 1},
        "model": {"kind": "entrypoint", "entrypoint": "failing_model:build"},
        "methods": [{"name": "gradient"}],
        "store": {"uri": str(tmp_path / "out" / "store.zarr"), "shard_size": 4},
        "compute": {"n_actors": 1},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_LOGGING_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "pathatlas.flows.cli", "run", str(tmp_path / "run.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    lines = said.strip().splitlines()
    assert len(lines) <= 8, said
    assert "Traceback" not in said and "\x1b[" not in said
    assert "error attribute stage: RuntimeError: simulated failure inside the model" in said
    assert "error   job attribute_shard(0, ['gradient'])" in said  # which shard job
    log_line = next(line for line in lines if line.startswith("full log: "))
    log = log_line.removeprefix("full log: ").split(" (or run with -v")[0]
    assert os.path.dirname(log) == str(tmp_path / "out" / "logs")
    text = open(log, encoding="utf-8").read()
    assert "Traceback" in text and "simulated failure inside the model" in text and "\x1b[" not in text
