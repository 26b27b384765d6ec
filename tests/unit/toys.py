"""The 2-D toy functions of the test cases, vectorised over a batch ``(N, 2) -> (N,)``."""

from __future__ import annotations

import torch

F64 = torch.float64


def t(*values) -> torch.Tensor:
    return torch.tensor([values], dtype=F64)


def linear(x):  # 2 x1 + x2
    return 2 * x[:, 0] + x[:, 1]


def square_of_linear(x):  # (2 x1 + x2)^2
    return (2 * x[:, 0] + x[:, 1]) ** 2


def quadratic(x):  # 2 x1^2 + x2^2
    return 2 * x[:, 0] ** 2 + x[:, 1] ** 2


def ridge(x):  # max(x1, x2 - 1): the IG² toy; ties go to x1
    return torch.where(x[:, 0] >= x[:, 1] - 1, x[:, 0], x[:, 1] - 1)


def ig_paper(x):  # ReLU(ReLU(x1) - 1 - ReLU(x2))
    return torch.relu(torch.relu(x[:, 0]) - 1 - torch.relu(x[:, 1]))
