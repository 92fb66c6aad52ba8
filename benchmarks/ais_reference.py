"""The RNN-RBM's AIS as it was before ``musicrnn.ais`` (100 runs x 300 temperatures from each frame's
visible biases): kept unchanged as the reference that ``bench.py`` times the new default against."""

import math

import torch
import torch.nn.functional as F

from musicrnn.ais import bernoulli


def ais_log_z(b_v, b_h, W, runs: int = 100, steps: int = 300):
    """Annealed importance sampling estimate of ``log Z`` for each RBM; returns ``(log_z (n,), var (n,))``.

    The path runs from ``beta = 0`` to ``1`` in ``steps`` equal steps over
    ``p_beta(v) ~ exp(b_v.v) prod_j (1 + exp(beta (b_h + v W)_j))``: at ``beta = 0`` the visible units are
    independent with the frame's own biases (``log Z_0 = sum softplus(b_v) + H log 2``), and the base
    already matches the frame's visible marginals. All ``n * runs`` chains advance together.
    ``var`` is the delta-method variance of ``log Z`` over the runs (its square root is the standard
    error). The estimate is unbiased for ``Z``, so ``log Z`` is low on average, by less with more
    temperatures: ``benchmarks/ais_convergence.py`` shows how much. (Starting instead from the
    mean-field marginals, or with the hidden biases in the base, did not converge faster on a trained
    JSB model.)
    """
    n, H = b_h.shape
    bv = b_v.repeat_interleave(runs, 0)  # (n * runs, D)
    bh = b_h.repeat_interleave(runs, 0)
    v = bernoulli(torch.sigmoid(bv))
    log_w = torch.zeros(len(v), dtype=torch.float64)
    betas = torch.linspace(0, 1, steps + 1)
    act = bh + v @ W  # (n * runs, H)
    for b_prev, b in zip(betas[:-1], betas[1:]):
        log_w += (F.softplus(b * act) - F.softplus(b_prev * act)).sum(-1).double()
        h = bernoulli(torch.sigmoid(b * act))
        v = bernoulli(torch.sigmoid(bv + b * (h @ W.T)))
        act = bh + v @ W
    log_w = log_w.view(n, runs)
    log_z0 = (F.softplus(b_v).sum(-1) + H * math.log(2)).double()
    log_mean_w = torch.logsumexp(log_w, 1) - math.log(runs)
    w = torch.exp(log_w - log_w.max(1, keepdim=True).values)
    var = w.var(1) / (runs * w.mean(1) ** 2) if runs > 1 else torch.zeros(n, dtype=torch.float64)
    return (log_z0 + log_mean_w).to(W.dtype), var
