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
from torch.utils.checkpoint import checkpoint

from musicrnn.model import SequenceModel
from musicrnn.pianoroll import NUM_PITCHES


def nade_logits(v: torch.Tensor, b_v: torch.Tensor, b_h: torch.Tensor, W: torch.Tensor,
                V: torch.Tensor) -> torch.Tensor:
    """Logits of every conditional ``p(v_i = 1 | v_<i)`` at once.

    ``v (frames, D)``, ``b_v (frames, D)``, ``b_h (frames, H)``, ``W (H, D)``, ``V (D, H)`` ->
    ``(frames, D)``. Builds ``a`` for all pitches as an exclusive cumulative sum, a
    ``(frames, D, H)`` tensor: no loop over pitches.
    """
    contrib = v[:, :, None] * W.T[None]  # (frames, D, H): v_j W[:, j]
    a = b_h[:, None, :] + contrib.cumsum(1) - contrib  # sum over j < i only
    return b_v + (torch.sigmoid(a) * V[None]).sum(-1)


class RNNNADE(SequenceModel):
    """RNN-NADE: exact log-likelihood, trained by maximum likelihood.

    Frame accuracy predicts a frame greedily: pitch by pitch, each on when its conditional, given the
    pitches already decided, exceeds 1/2.

    Args:
        nade_hidden: NADE hidden units H.
        frame_chunk: frames evaluated together in one ``(frame_chunk, 88, H)`` block; during training
            each block is recomputed in the backward pass (activation checkpointing), so memory stays
            bounded by this number however long the batch is.
        **kwargs: the recurrent core and optimizer (see ``SequenceModel``).
    """

    def __init__(self, nade_hidden: int = 150, frame_chunk: int = 2048, **kwargs):
        super().__init__(**kwargs)
        D, H, U = NUM_PITCHES, nade_hidden, self.hparams.hidden
        self.W = nn.Parameter(torch.randn(H, D) * 0.01)
        self.V = nn.Parameter(torch.randn(D, H) * 0.01)
        self.to_bv = nn.Linear(U, D)  # weight W_uv, bias b_v
        self.to_bh = nn.Linear(U, H)  # weight W_uh, bias b_h

    def _frame_logp(self, v, cond):
        logits = nade_logits(v, self.to_bv(cond), self.to_bh(cond), self.W, self.V)
        return -F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)

    def log_prob(self, cond, x):
        shape = x.shape[:2]
        v, c = x.reshape(-1, NUM_PITCHES), cond.reshape(-1, cond.shape[-1])
        k = self.hparams.frame_chunk
        parts = []
        for i in range(0, len(v), k):
            if torch.is_grad_enabled() and len(v) > k:
                parts.append(checkpoint(self._frame_logp, v[i:i + k], c[i:i + k], use_reentrant=False))
            else:
                parts.append(self._frame_logp(v[i:i + k], c[i:i + k]))
        return torch.cat(parts).reshape(shape), None

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
