"""RNN-NADE (Boulanger-Lewandowski, Bengio & Vincent 2012): a NADE over each frame's 88 pitches whose
biases come from the recurrent state.

Notation (Larochelle & Murray 2011; the 2012 paper), D = 88 pitches, H = NADE hidden units:
    b_v(t) = b_v + W_uv u_{t-1}          ``to_bv``  (D,)    visible biases of frame t
    b_h(t) = b_h + W_uh u_{t-1}          ``to_bh``  (H,)    hidden biases of frame t
    a_1 = b_h(t),  a_{i+1} = a_i + W[:, i] v_i              ``W``  (H, D)  shared over time
    p(v_i = 1 | v_<i) = sigm(b_v(t)_i + V[i] . sigm(a_i))     ``V``  (D, H)  shared over time
Only the biases depend on time; W and V are the NADE's own weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicrnn.models.base import SequenceModel
from musicrnn.pianoroll import NUM_PITCHES


class NADELogProb(torch.autograd.Function):
    """``log p(v)`` of a NADE per frame, with the gradient of Larochelle & Murray (2011) by hand.

    ``v (frames, D)``, ``b_v (frames, D)``, ``b_h (frames, H)``, ``W (H, D)``, ``V (D, H)`` ->
    ``(frames,)``. The loop runs over the D pitches, each step an operation on all frames at once
    (``(frames, H)``); there is no loop over time. Autograd through the same loop (or through the
    equivalent ``(frames, D, H)`` cumulative sum) would keep a ``(frames, D, H)`` tensor alive for the
    backward pass; here the backward pass rebuilds each ``a_i`` by subtracting ``W[:, i] v_i`` from
    ``a_{i+1}``, so memory is ``O(frames * (D + H))`` and every working tensor stays in cache. Measured
    against the cumulative-sum version on this 2-core CPU: see ``benchmarks/``.
    """

    @staticmethod
    def forward(ctx, v, b_v, b_h, W, V):
        # Pitch-major contiguous copies: the loop reads row i of each, not a strided column.
        vT, Wt = v.T.contiguous(), W.T.contiguous()  # (D, frames), (D, H)
        logitsT = torch.empty_like(vT)
        a = b_h.clone()  # a_1 = b_h, (frames, H)
        for i in range(len(vT)):
            torch.mv(torch.sigmoid(a), V[i], out=logitsT[i])
            a.addr_(vT[i], Wt[i])  # a_{i+1} = a_i + v_i W[:, i]
        logits = logitsT.T + b_v
        ctx.save_for_backward(vT, a, Wt, V, logits, v)
        return -F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)

    @staticmethod
    def backward(ctx, grad):
        vT, a, Wt, V, logits, v = ctx.saved_tensors
        d_logits = grad[:, None] * (v - torch.sigmoid(logits))  # (frames, D) = grad of b_v
        dT = d_logits.T.contiguous()
        grad_Wt, grad_V = torch.zeros_like(Wt), torch.zeros_like(V)
        d_a = torch.zeros_like(a)  # sum of dL/da_k over k > i: (frames, H)
        a = a.clone()
        for i in reversed(range(len(vT))):
            a.addr_(vT[i], Wt[i], alpha=-1)  # back to a_i
            h = torch.sigmoid(a)
            torch.mv(d_a.T, vT[i], out=grad_Wt[i])  # W[:, i] feeds every a_k with k > i
            torch.mv(h.T, dT[i], out=grad_V[i])
            d_a += torch.ops.aten.sigmoid_backward(torch.outer(dT[i], V[i]), h)  # (dL/dh) h (1 - h)
        return None, d_logits, d_a, grad_Wt.T, grad_V


def nade_log_prob(v, b_v, b_h, W, V):
    """``log p(v)`` per frame under a NADE (see ``NADELogProb``); differentiable in all but ``v``."""
    return NADELogProb.apply(v, b_v, b_h, W, V)


class RNNNADE(SequenceModel):
    """RNN-NADE: exact log-likelihood, trained by maximum likelihood.

    Frame accuracy predicts a frame greedily: pitch by pitch, each on when its conditional, given the
    pitches already decided, exceeds 1/2.

    Args:
        nade_hidden: NADE hidden units H.
        **kwargs: the recurrent core and optimizer (see ``SequenceModel``).
    """

    def __init__(self, nade_hidden: int = 150, **kwargs):
        super().__init__(**kwargs)
        D, H, U = NUM_PITCHES, nade_hidden, self.hparams.hidden
        self.W = nn.Parameter(torch.randn(H, D) * 0.01)
        self.V = nn.Parameter(torch.randn(D, H) * 0.01)
        self.to_bv = nn.Linear(U, D)  # weight W_uv, bias b_v
        self.to_bh = nn.Linear(U, H)  # weight W_uh, bias b_h

    def log_prob(self, cond, x):
        v, c = x.reshape(-1, NUM_PITCHES), cond.reshape(-1, cond.shape[-1])  # (frames, .)
        logp = nade_log_prob(v, self.to_bv(c), self.to_bh(c), self.W, self.V)
        return logp.reshape(x.shape[:2]), None

    def _ancestral(self, cond, choose):
        """Decide pitches one after another: ``choose(probabilities (n,)) -> values (n,)``."""
        b_v, a = self.to_bv(cond), self.to_bh(cond)  # (n, D), (n, H)
        v = torch.zeros_like(b_v)
        for i in range(NUM_PITCHES):
            logit = b_v[:, i] + torch.sigmoid(a) @ self.V[i]
            v[:, i] = choose(logit)
            a = a + v[:, i:i + 1] * self.W[:, i]
        return v

    def predict(self, cond):
        flat = cond.reshape(-1, cond.shape[-1])
        return self._ancestral(flat, lambda logit: (logit > 0).float()).reshape(*cond.shape[:2], -1)

    def sample_frame(self, cond, temperature):
        return self._ancestral(cond, lambda logit: torch.bernoulli(torch.sigmoid(logit / temperature)))
