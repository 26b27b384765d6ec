"""Per-sample random streams that do not depend on how a dataset is batched.

A stochastic method (SmoothGrad noise, Expected Gradients draws, the random baseline map) must
give a sample the same map whether it is explained alone, in a batch of 64, or on another shard.
So each sample's stream is seeded from the method's ``seed`` and a fingerprint of the sample's
own values, never from its position in the batch.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def sample_keys(x: torch.Tensor) -> list[int]:
    """``(N, ...) -> N`` 63-bit fingerprints of each sample's values (one host copy of ``x``)."""
    rows = x.detach().to("cpu", torch.float32).contiguous().numpy().reshape(x.shape[0], -1)
    return [int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little") >> 1 for r in rows]


def generators(x: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One seeded generator per sample of ``x`` on ``x``'s device (same device, same draws)."""
    out = []
    for key in sample_keys(x):
        g = torch.Generator(device=x.device)
        g.manual_seed((key ^ (int(seed) * 0x9E3779B97F4A7C15)) % (2**63))
        out.append(g)
    return out


def randn_like_each(x: torch.Tensor, seed: int, n: int) -> torch.Tensor:
    """``(N, ...) -> (N, n, ...)`` standard normal draws, a per-sample stream (see module doc)."""
    return torch.stack(
        [torch.randn((n, *x.shape[1:]), generator=g, device=x.device, dtype=x.dtype) for g in generators(x, seed)]
    )


def rng_for(x: torch.Tensor, seed: int) -> list[np.random.Generator]:
    """Per-sample numpy generators (for index draws that are made on the host)."""
    return [np.random.default_rng([key, int(seed) % 2**32]) for key in sample_keys(x)]
