"""Shared fixtures. Heavy ones (Ray, the Prefect harness) are session-scoped and started lazily."""

from __future__ import annotations

import os

# Before prefect or ray are imported anywhere: quiet, no telemetry, no token auth.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest
import torch
from torch import nn


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One real local Ray for the whole session (4-5 s to start)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # never someone's `ray start` cluster on this machine
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=150 * 2**20,
            log_to_driver=False,
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_harness():
    """A real Prefect API server on a fresh temporary database, once per session (10-15 s)."""
    from prefect.testing.utilities import prefect_test_harness  # lazy: imports the whole server

    with prefect_test_harness(server_startup_timeout=90):
        yield


class TinyCNN(nn.Module):
    """A 3-layer CNN for ``(N, 3, 16, 16) -> (N, 4)`` with fixed seeded weights."""

    def __init__(self, seed: int = 0, channels: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 4),
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    return TinyCNN()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def s3_server():
    """A real local S3 server (moto, in a subprocess) with one bucket, once per session (~1 s).
    Tests share it: give each test its own prefix (``s3_server.uri(<unique name>)``)."""
    from tests.s3server import local_s3_server

    with local_s3_server() as server:
        yield server
