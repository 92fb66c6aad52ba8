"""RNN-RBM (Boulanger-Lewandowski, Bengio & Vincent 2012, eqs. 9-13): a binary RBM per frame whose
biases come from the recurrent state.

Notation, D = 88 pitches, H = RBM hidden units:
    b_v(t) = b_v + W_uv u_{t-1}     ``to_bv``   (D,)
    b_h(t) = b_h + W_uh u_{t-1}     ``to_bh``   (H,)
    W                               ``W``       (D, H), shared over time
    free energy  F(v) = -b_v(t).v - sum_j softplus(b_h(t) + v W)_j,   p(v) = exp(-F(v)) / Z(t)
Training: CD-k; the cost ``F(v_data) - F(v_k)`` with the chain's end ``v_k`` held constant sends the
gradient into W and, through the biases, into the RNN. Evaluation: ``log Z(t)`` of every frame by
annealed importance sampling (Salakhutdinov & Murray 2008), or exactly for small layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from musicrnn.model import SequenceModel
from musicrnn.pianoroll import NUM_PITCHES


def bernoulli(p, out=None):
    """Binary samples with probabilities ``p``; about twice as fast as ``torch.bernoulli`` on CPU.
    ``out``: a buffer of ``p``'s shape to draw into (and return), instead of a new tensor."""
    u = torch.rand_like(p) if out is None else torch.rand(p.shape, out=out)
    return u.lt_(p)  # 1.0 where u < p, in u's own dtype: no bool tensor, no conversion


def free_energy(v, b_v, b_h, W):
    """``v (n, D)``, ``b_v (n, D)``, ``b_h (n, H)``, ``W (D, H)`` -> ``F(v) (n,)``."""
    return -(v * b_v).sum(-1) - F.softplus(b_h + v @ W).sum(-1)


def gibbs(v, b_v, b_h, W, steps: int, temperature: float = 1.0):
    """``steps`` rounds of block Gibbs sampling v -> h -> v; returns the last ``v (n, D)``.

    Four buffers serve every step (fused bias-and-product, in-place sigmoid, samples drawn into a
    buffer): CD-15 at batch 1 spends most of its time allocating and dispatching small tensors
    otherwise. Same random draws, in the same order, as ``bernoulli(sigmoid((b + x W) / T))``.
    """
    if temperature != 1.0:
        b_v, b_h, W = b_v / temperature, b_h / temperature, W / temperature
    p_h, p_v = torch.empty_like(b_h), torch.empty_like(b_v)
    h, v_next = torch.empty_like(b_h), torch.empty_like(b_v)
    for _ in range(steps):
        bernoulli(torch.addmm(b_h, v, W, out=p_h).sigmoid_(), out=h)
        v = bernoulli(torch.addmm(b_v, h, W.T, out=p_v).sigmoid_(), out=v_next)
    return v


def exact_log_z(b_v, b_h, W):
    """``log Z`` of each RBM ``(n,)`` by enumerating the smaller layer (at most 20 units)."""
    D, H = W.shape
    if min(D, H) > 20:
        raise ValueError(f"exact log Z enumerates 2^min(D, H) states; {min(D, H)} units is too many")
    enum_hidden = H <= D
    n = H if enum_hidden else D
    states = ((torch.arange(2 ** n)[:, None] >> torch.arange(n)) & 1).to(W.dtype)  # (2^n, n)
    if enum_hidden:  # sum over v analytically: sum_h exp(b_h.h) prod_i (1 + exp(b_v_i + (W h)_i))
        terms = b_h @ states.T + F.softplus(b_v[:, None, :] + (states @ W.T)[None]).sum(-1)
    else:
        terms = b_v @ states.T + F.softplus(b_h[:, None, :] + (states @ W)[None]).sum(-1)
    return torch.logsumexp(terms, dim=1)


def approximate_mode(b_v, b_h, W, chains: int = 50, steps: int = 25):
    """A most likely frame of each RBM, approximately: of ``chains`` Gibbs chains of ``steps`` steps started
    from ``sigm(b_v)``, the end state with the lowest free energy. ``b_v (n, D)``, ``b_h (n, H)`` -> ``(n, D)``.

    (Thresholding the visible marginals at 1/2, by mean-field or by sampling, predicts almost empty
    frames once the model spreads its mass over several chords: frame accuracy 0.09 against 0.27 for
    this on a JSB model.)
    """
    n = len(b_v)
    bv, bh = b_v.repeat_interleave(chains, 0), b_h.repeat_interleave(chains, 0)  # (n * chains, .)
    v = gibbs(bernoulli(torch.sigmoid(bv)), bv, bh, W, steps)
    best = free_energy(v, bv, bh, W).view(n, chains).argmin(1)  # (n,)
    return v.view(n, chains, -1)[torch.arange(n), best]


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


class RNNRBM(SequenceModel):
    """RNN-RBM trained by CD-k; log-likelihood by AIS.

    Frame accuracy predicts each frame by its approximate mode (``approximate_mode``).

    Args:
        rbm_hidden: RBM hidden units H.
        cd_steps: k of CD-k during training.
        gibbs_steps: Gibbs steps per generated frame.
        ais_runs: AIS runs per frame in test and ``evaluate`` (the paper uses 100).
        ais_steps: intermediate temperatures of AIS. On trained JSB models, going from 300 to 1000
            moved the mean log Z by 0.03 nats per frame or less (``benchmarks/ais_convergence.py``).
        val_ais_runs: AIS runs per frame for the cheaper validation estimate each epoch.
        val_ais_steps: AIS temperatures for validation.
        ais_batch: frames whose AIS (or mode-finding) chains run together; bounds memory.
        **kwargs: the recurrent core and optimizer (see ``SequenceModel``).
    """

    def __init__(self, rbm_hidden: int = 150, cd_steps: int = 15, gibbs_steps: int = 25, ais_runs: int = 100,
                 ais_steps: int = 300, val_ais_runs: int = 10, val_ais_steps: int = 200,
                 ais_batch: int = 256, **kwargs):
        super().__init__(**kwargs)
        D, H, U = NUM_PITCHES, rbm_hidden, self.hparams.hidden
        self.W = nn.Parameter(torch.randn(D, H) * 0.01)
        self.to_bv = nn.Linear(U, D)  # weight W_uv, bias b_v
        self.to_bh = nn.Linear(U, H)  # weight W_uh, bias b_h

    def loss(self, cond, x, mask):
        v, c = x[mask], cond[mask]  # (frames, .)
        b_v, b_h = self.to_bv(c), self.to_bh(c)
        with torch.no_grad():
            v_k = gibbs(v, b_v, b_h, self.W, self.hparams.cd_steps)
        cost = (free_energy(v, b_v, b_h, self.W) - free_energy(v_k, b_v, b_h, self.W)).mean()
        return cost, None

    def log_prob(self, cond, x):
        h = self.hparams
        runs, steps = (h.val_ais_runs, h.val_ais_steps) if self.trainer_stage() == "validate" else \
            (h.ais_runs, h.ais_steps)
        v, c = x.reshape(-1, NUM_PITCHES), cond.reshape(-1, cond.shape[-1])
        b_v, b_h = self.to_bv(c), self.to_bh(c)
        log_z, var = [], []
        for i in range(0, len(v), h.ais_batch):
            lz, vz = ais_log_z(b_v[i:i + h.ais_batch], b_h[i:i + h.ais_batch], self.W, runs, steps)
            log_z.append(lz)
            var.append(vz)
        logp = -free_energy(v, b_v, b_h, self.W) - torch.cat(log_z)
        return logp.reshape(x.shape[:2]), torch.cat(var).reshape(x.shape[:2])

    def trainer_stage(self) -> str:
        """'validate' inside fit's validation loop, else 'test' (evaluation uses the full AIS)."""
        t = self._trainer
        return "validate" if t is not None and (t.validating or t.sanity_checking) else "test"

    def predict(self, cond):
        c, k = cond.reshape(-1, cond.shape[-1]), self.hparams.ais_batch  # (frames, hidden), k at a time
        modes = [approximate_mode(self.to_bv(c[i:i + k]), self.to_bh(c[i:i + k]), self.W,
                                  steps=self.hparams.gibbs_steps) for i in range(0, len(c), k)]
        return torch.cat(modes).reshape(*cond.shape[:-1], NUM_PITCHES) > 0.5

    def sample_frame(self, cond, temperature):
        b_v, b_h = self.to_bv(cond), self.to_bh(cond)
        v = bernoulli(torch.sigmoid(b_v / temperature))
        return gibbs(v, b_v, b_h, self.W, self.hparams.gibbs_steps, temperature)
