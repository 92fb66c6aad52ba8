"""Today's ``NADELogProb`` (musicrnn/nade.py, now musicrnn/models/nade.py, before the sparse rewrite), kept unchanged as the reference
that ``benchmarks/speed_ratios.py`` times the new one against and ``tests/test_models.py`` checks it with.
Do not edit: it is the yardstick of issue 13's "1.5x RNN-NADE training throughput".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ReferenceNADELogProb(torch.autograd.Function):
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


def reference_nade_log_prob(v, b_v, b_h, W, V):
    """``log p(v)`` per frame by the reference loop; same signature as ``musicrnn.models.nade.nade_log_prob``."""
    return ReferenceNADELogProb.apply(v, b_v, b_h, W, V)
