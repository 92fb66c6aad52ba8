"""Benchmark metrics, exact under batching and data parallelism.

``FrameNLL``: the sum of ``log p(x_t | x_<t)`` over every non-padding frame of every sequence of the
split, divided by the number of those frames (nats per time step; longer sequences weigh more). Both
sums are all-reduced across processes before the division, never a mean of per-batch or per-rank means.

``FrameAccuracy`` (Bay et al. 2009): ``sum TP / sum (TP + FP + FN)`` over all frames and pitches.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class FrameNLL(Metric):
    """Negative log-likelihood per frame. ``update(logp (batch, time), mask, var=None)``; ``var`` is the
    variance of a stochastic estimate of each ``logp`` (AIS), giving ``standard_error()``."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("logp", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frames", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("var", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logp: torch.Tensor, mask: torch.Tensor, var: torch.Tensor | None = None) -> None:
        self.logp += logp.double()[mask].sum()
        self.frames += mask.sum()
        if var is not None:
            self.var += var.double()[mask].sum()

    def compute(self) -> torch.Tensor:
        return -self.logp / self.frames

    def standard_error(self) -> torch.Tensor:
        """Standard error of ``compute()`` from the estimator's own spread (0 for exact models)."""
        return self.var.sqrt() / self.frames


class FrameAccuracy(Metric):
    """``update(pred (batch, time, pitch) binary, target, mask (batch, time))``."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        pred, target = pred[mask].bool(), target[mask].bool()
        self.tp += (pred & target).sum()
        self.fp += (pred & ~target).sum()
        self.fn += (~pred & target).sum()

    def compute(self) -> torch.Tensor:
        return self.tp / (self.tp + self.fp + self.fn).clamp(min=1)
