"""RNN-RBM (Boulanger-Lewandowski, Bengio & Vincent 2012, eqs. 9-13): a binary RBM per frame whose
biases come from the recurrent state.

Notation, D = 88 pitches, H = RBM hidden units:
    b_v(t) = b_v + W_uv u_{t-1}     ``to_bv``   (D,)
    b_h(t) = b_h + W_uh u_{t-1}     ``to_bh``   (H,)
    W                               ``W``       (D, H), shared over time
    free energy  F(v) = -b_v(t).v - sum_j softplus(b_h(t) + v W)_j,   p(v) = exp(-F(v)) / Z(t)
Training: CD-k; the cost ``F(v_data) - F(v_k)`` with the chain's end ``v_k`` held constant sends the
gradient into W and, through the biases, into the RNN. Evaluation: ``log Z(t)`` of every frame by
annealed importance sampling (``musicrnn.ais``), or exactly for small layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicrnn.ais import AIS_RUNS, AIS_STEPS, Uniform, ais_log_z, bernoulli, gibbs_sweep, linear
from musicrnn.models.base import SequenceModel
from musicrnn.pianoroll import NUM_PITCHES

DRAW_BLOCK = 1 << 18  # uniform numbers per draw in ``gibbs``: 1 MiB
SANITY_FRAMES = 8  # frames per sequence that ``validation_step`` scores in Lightning's sanity check


def free_energy(v, b_v, b_h, W):
    """``v (n, D)``, ``b_v (n, D)``, ``b_h (n, H)``, ``W (D, H)`` -> ``F(v) (n,)``."""
    return -(v * b_v).sum(-1) - F.softplus(b_h + v @ W).sum(-1)


class CDCost(torch.autograd.Function):
    """The CD cost ``mean(F(v) - F(v_k))`` over ``n`` frames with the chain's end ``v_k`` held constant, and its
    gradient written out: ``d/db_v = (v_k - v) / n``, ``d/db_h = (sigm(b_h + v_k W) - sigm(b_h + v W)) / n``,
    ``d/dW = (v_k^T sigm(b_h + v_k W) - v^T sigm(b_h + v W)) / n``. ``v, v_k, b_v (n, D)``, ``b_h (n, H)``,
    ``W (D, H)`` -> a scalar.

    Why not autograd through ``free_energy`` twice: at batch 1 (~60 frames) its graph of ~20 small ops
    costs more than the sums; both halves share one product here, and the backward pass is a sigmoid, a
    few element-wise ops and one product. Forward and backward, one thread: 60 frames 178 against 214 us,
    900 frames 1.64 against 1.77 ms.
    """

    @staticmethod
    def forward(ctx, v, v_k, b_v, b_h, W):
        n = len(v)
        vv = torch.stack([v, v_k])  # (2, n, D)
        z = linear(vv, W.T, b_h)  # (2, n, H): the hidden inputs of data and chain end (oneDNN when wide)
        sp = F.softplus(z).sum((1, 2))  # (2,)
        dv = v_k - v  # (n, D): the cost's gradient in b_v, times n
        ctx.save_for_backward(vv, z, dv)
        return (torch.dot(dv.reshape(-1), b_v.reshape(-1)) + sp[1] - sp[0]) / n

    @staticmethod
    def backward(ctx, grad):
        vv, z, dv = ctx.saved_tensors
        g = grad / z.shape[1]
        s = z.sigmoid()
        s[0].neg_()  # -sigm(b_h + v W), +sigm(b_h + v_k W)
        d_W = vv.flatten(0, 1).T @ s.flatten(0, 1)  # (D, H): v_k^T s_k - v^T s_v
        return None, None, dv * g, (s[0] + s[1]).mul_(g), d_W.mul_(g)


def gibbs(v, b_v, b_h, W, steps: int, temperature: float = 1.0):
    """``steps`` rounds of block Gibbs sampling v -> h -> v; returns the last ``v (n, D)``.

    CD-15 is almost all matrix products and random numbers, so both take the fast paths of
    ``musicrnn.ais`` (``gibbs_sweep``): ``linear`` (oneDNN for large batches) and numpy's generator
    (``Uniform``). One thread, CD-15, best of five timed back to back: 1,600 frames (a
    batch of 16 chunks of 100) 17.4 ms against 25.7 ms with MKL's fused-bias products and torch's
    generator; 6,400 frames 78.9 against 106.8 ms. (Below ``ONEDNN_ROWS_PER_THREAD`` rows a thread
    ``linear`` is MKL's.)
    The uniform draws of up to ``DRAW_BLOCK`` numbers come from one call: at batch 1 (~60 frames) a
    sweep's own products take ~40 us, and drawing each layer's numbers separately added ~25 us more
    of per-call work (CD-15 1.41 against 1.06 ms). They have 16 bits each (``Uniform``'s ``bits``: a unit
    fires with its probability to within 2^-17), which halves the generator's time: CD-15 with 60 rows 0.86
    against 0.95 ms, with 900 rows (batch 16) 6.8 against 8.3 ms.
    """
    if temperature != 1.0:
        b_v, b_h, W = b_v / temperature, b_h / temperature, W / temperature
    D, H = W.shape
    Wt, uniform = W.T.contiguous(), Uniform(W, bits=16)  # Wt (H, D)
    block = max(1, min(steps, DRAW_BLOCK // (v.numel() // D * (D + H))))  # sweeps per draw
    for k in range(steps):
        if k % block == 0:  # one draw for both layers of the next `block` sweeps, as in ``fit_base``
            u = uniform((min(block, steps - k), *v.shape[:-1], D + H))
            u_h, u_v = u[..., :H].unbind(0), u[..., H:].unbind(0)  # views, sweep by sweep
        v = gibbs_sweep(v, b_v, b_h, W, Wt, u_h[k % block], u_v[k % block])[2]
    return v


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
    return v.view(n, chains, -1)[torch.arange(n, device=v.device), best]


class RNNRBM(SequenceModel):
    """RNN-RBM trained by CD-k; log-likelihood by AIS.

    Frame accuracy predicts each frame by its approximate mode (``approximate_mode``).

    Args:
        rbm_hidden: RBM hidden units H.
        cd_steps: k of CD-k during training.
        gibbs_steps: Gibbs steps per generated frame.
        val_ais_runs: AIS runs per frame for the cheaper validation estimate each epoch.
        val_ais_steps: AIS temperatures for validation.
        ais_batch: frames whose AIS (or mode-finding) chains run together; bounds memory.
        **kwargs: the recurrent core and optimizer (see ``SequenceModel``).
    """

    wide_products = True  # CD-k over a batch's frames: at batch 16 58k frames/s on two threads, 45-48k on one

    def __init__(self, rbm_hidden: int = 150, cd_steps: int = 15, gibbs_steps: int = 25,
                 val_ais_runs: int = 10, val_ais_steps: int = 100,
                 ais_batch: int = 256, **kwargs):
        super().__init__(**kwargs)
        D, H, U = NUM_PITCHES, rbm_hidden, self.hparams.hidden
        self.W = nn.Parameter(torch.randn(D, H) * 0.01)
        self.to_bv = nn.Linear(U, D)  # weight W_uv, bias b_v
        self.to_bh = nn.Linear(U, H)  # weight W_uh, bias b_h

    def loss(self, cond, x, mask):
        v, c = x.flatten(0, 1), cond.flatten(0, 1)  # (batch * time, .)
        if not mask.all():  # padding: keep the real frames (at batch 1 there is none)
            # index_select, not c[mask]: its backward pass is an index_add, 5x faster on the CPU than the
            # boolean index's accumulating index_put (batch 16 of 100 frames, two threads: 72 against 398 us)
            idx = mask.flatten().nonzero()[:, 0]
            v, c = v.index_select(0, idx), c.index_select(0, idx)  # (frames, .)
        b_v, b_h = self.to_bv(c), self.to_bh(c)
        with torch.no_grad():
            v_k = gibbs(v, b_v, b_h, self.W, self.hparams.cd_steps)
        return CDCost.apply(v, v_k, b_v, b_h, self.W), None

    def log_prob(self, cond, x, ais_runs: int = AIS_RUNS, ais_steps: int = AIS_STEPS):
        """AIS with ``ais_runs`` runs and ``ais_steps`` temperatures per frame (test and ``evaluate``
        default to ``musicrnn.ais``'s), ``ais_batch`` frames at a time; returns ``(logp, var)``."""
        h = self.hparams
        runs, steps = ais_runs, ais_steps
        v, c = x.reshape(-1, NUM_PITCHES), cond.reshape(-1, cond.shape[-1])
        b_v, b_h = self.to_bv(c), self.to_bh(c)
        log_z, var = [], []
        for i in range(0, len(v), h.ais_batch):
            lz, vz = ais_log_z(b_v[i:i + h.ais_batch], b_h[i:i + h.ais_batch], self.W, runs, steps)
            log_z.append(lz)
            var.append(vz)
        logp = -free_energy(v, b_v, b_h, self.W) - torch.cat(log_z)
        return logp.reshape(x.shape[:2]), torch.cat(var).reshape(x.shape[:2])

    def validation_step(self, batch, batch_idx):
        if self.trainer.sanity_checking:  # Lightning's check before training, whose numbers it discards
            # the same code on each sequence's first frames: with all of them the check's two batches of
            # AIS took 1.3 s of every JSB run's start (configs/jsb/rnn_rbm.yaml, idle, two threads)
            batch = {k: v[:, :SANITY_FRAMES] for k, v in batch.items()}
        self._evaluate(batch, self.val_nll, self.val_acc, "val", ais_runs=self.hparams.val_ais_runs,
                       ais_steps=self.hparams.val_ais_steps)

    def predict(self, cond):
        c, k = cond.reshape(-1, cond.shape[-1]), self.hparams.ais_batch  # (frames, hidden), k at a time
        modes = [approximate_mode(self.to_bv(c[i:i + k]), self.to_bh(c[i:i + k]), self.W,
                                  steps=self.hparams.gibbs_steps) for i in range(0, len(c), k)]
        return torch.cat(modes).reshape(*cond.shape[:-1], NUM_PITCHES) > 0.5

    def sample_frame(self, cond, temperature, gibbs_steps: int | None = None):
        """A frame from a Gibbs chain of ``gibbs_steps`` steps (default: the model's ``gibbs_steps``)."""
        b_v, b_h = self.to_bv(cond), self.to_bh(cond)
        v = bernoulli(torch.sigmoid(b_v / temperature))
        return gibbs(v, b_v, b_h, self.W, gibbs_steps or self.hparams.gibbs_steps, temperature)
