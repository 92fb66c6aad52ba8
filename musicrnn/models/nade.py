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

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from musicrnn.models.base import SequenceModel
from musicrnn.pianoroll import NUM_PITCHES


def _layout(on, width: int):
    """Where each frame's hidden state changes, for ``NADELogProb``. ``on (n, D)`` bool.

    The distinct states of all frames are rows of one ``(R, H)`` matrix, ``R = n + active pitches``: row
    ``start[f] + s`` is frame f's ``a`` after its first s active pitches, and ``by_slot[s - 1] = (rows,
    pitches)`` lists the rows that add ``W[:, pitch]`` to the row before them. The pitches are cut into
    blocks of ``width``; ``rows (R2,)`` lists, block after block, the states that the block's pitches read
    (``bounds``: where each block's begin), and ``read (n * D,)`` is the flat index into the blocks'
    logits ``(R2, width)`` of each frame's logit of each pitch.
    """
    n, D = on.shape
    k = on.sum(1)  # (n,) active pitches per frame
    start = k.cumsum(0) - k + torch.arange(n, device=on.device)
    # (n, D): active pitches below i = which state pitch i reads. Few (n, D) temporaries here and below:
    # each new one of a few hundred KiB costs page faults (0.2-0.4 ms each on JSB batches).
    seg = F.pad(on[:, :-1], (1, 0)).cumsum(1, dtype=torch.int32)
    frame, pitch = on.nonzero(as_tuple=True)  # frame-major, then pitch order
    slot = seg.view(-1).index_select(0, frame * D + pitch) + 1  # 1..k_f
    counts = torch.bincount(slot, minlength=1).tolist()[1:]
    order = torch.argsort(slot, stable=True)
    dst = (start.index_select(0, frame) + slot).index_select(0, order)
    by_slot = list(zip(dst.split(counts), pitch.index_select(0, order).split(counts)))
    blocks = -(-D // width)
    if blocks * width > D:
        seg = torch.cat([seg, seg[:, -1:].expand(n, blocks * width - D)], 1)
    seg = seg.view(n, blocks, width)
    first = seg[:, :, 0]  # (n, blocks)
    c = (seg[:, :, -1] - first + 1).T.reshape(-1).long()  # states each block reads of each frame, block-major
    off = c.cumsum(0) - c
    total = int(c.sum())
    rows = torch.repeat_interleave((start + first.T).reshape(-1) - off, c, output_size=total) + torch.arange(total, device=on.device)
    bounds = (torch.cat([off[::n], off.new_tensor([total])]) if n
              else torch.zeros(blocks + 1, dtype=torch.long, device=on.device))
    lo, size = bounds[:-1, None], bounds[1:, None] - bounds[:-1, None]  # (blocks, 1)
    # block b's logits are a (width, size_b) matrix from flat position width * lo_b: pitch-major
    base = ((off.view(blocks, n) + (width - 1) * lo).T - first).int()  # (n, blocks); int32 halves read
    read = (seg + base[:, :, None]).add_(torch.arange(width, dtype=torch.int32, device=on.device) * size.int()).view(n, blocks * width)
    return start, by_slot, rows, (read[:, :D] if blocks * width > D else read).reshape(-1), bounds.tolist()


_SCRATCH: dict[tuple, torch.Tensor] = {}
_HB_OWNER: list = [None]  # the forward call whose states the "hb" scratch buffer holds


def _scratch(name: str, shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised temporary of ``shape``, reused from call to call (up to 2^24 elements). A fresh
    buffer of a few MiB costs a page fault per 4 KiB on first touch: on the JSB batches of
    ``benchmarks/speed_ratios.py`` that was about a quarter of ``NADELogProb``'s time (8.0 -> 6.0 ms with
    glibc told never to return memory, ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``).
    Only for tensors that die before the forward or backward pass that made them returns, or that the
    backward pass checks are still its own (``_HB_OWNER``). Each name keeps its largest buffer (at most
    64 MiB in float32) for the life of the process; inference mode has buffers of its own."""
    numel = math.prod(shape)
    if numel > 1 << 24:
        return like.new_empty(shape)
    key = (name, like.dtype, like.device, torch.is_inference_mode_enabled())  # inference tensors stay inside
    if key not in _SCRATCH or _SCRATCH[key].numel() < numel:
        _SCRATCH[key] = like.new_empty(numel)
    return _SCRATCH[key][:numel].view(shape)


def _hidden(b_h, Wt, start, by_slot):
    """``sigm(a)`` of every distinct state ``(R, H)``, in a scratch buffer; each ``a`` summed in the
    reference's order."""
    A = _scratch("a", (len(b_h) + sum(len(rows) for rows, _ in by_slot), b_h.shape[1]), b_h)
    A.index_copy_(0, start, b_h)
    for rows, p in by_slot:  # a after s pitches = a after s - 1 pitches + W[:, p_s]
        A.index_copy_(0, rows, A.index_select(0, rows - 1).add_(Wt.index_select(0, p)))
    return A.sigmoid_()


def _logits(hb, Vp, b_v, read, bounds, out):
    """Each frame's logit of each pitch into ``out (n, D)``: per block of pitches, ``V_b h_b^T`` (faster
    than ``h_b V_b^T``), read at the state each pitch reads, plus ``b_v``."""
    w = NADELogProb.PITCH_BLOCK
    g = _scratch("g", (len(hb) * w,), hb)
    for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        torch.mm(Vp[b * w:(b + 1) * w], hb[lo:hi].T, out=g[w * lo:w * hi].view(w, hi - lo))
    return torch.index_select(g, 0, read, out=out.view(-1)).view_as(out).add_(b_v)


class NADELogProb(torch.autograd.Function):
    """``log p(v)`` of a NADE per frame, with the gradient of Larochelle & Murray (2011) by hand.

    ``v (frames, D)`` binary, ``b_v (frames, D)``, ``b_h (frames, H)``, ``W (H, D)``, ``V (D, H)`` ->
    ``(frames,)``. Frames are sparse (3.7 of 88 pitches on in JSB), and ``a_{i+1} = a_i + W[:, i] v_i``
    changes only at a frame's active pitches: a frame with k pitches on has k + 1 distinct hidden states,
    each read by a run of consecutive pitches (``_layout``). Those states are computed once each
    (``_hidden``), and the logits of a block of ``PITCH_BLOCK`` pitches are one matrix product of the
    states the block reads with the block's rows of ``V``; the backward pass is two more products per
    block and a reverse cumulative sum over each frame's states (``grad W[:, p]`` sums ``dL/da`` over the
    states after pitch p). Memory is ``O((frames + active pitches) * H)``.
    """

    PITCH_BLOCK = 22

    @staticmethod
    def forward(ctx, v, b_v, b_h, W, V):
        w = NADELogProb.PITCH_BLOCK
        start, by_slot, rows, read, bounds = _layout(v != 0, w)
        Wt = W.T.contiguous()
        h = _hidden(b_h, Wt, start, by_slot)
        # The states each block reads (R2, H) and the logits, kept for the backward pass in scratch buffers
        # too (new ones cost 0.7-2.8 ms of page faults a call): unless another call overwrote them by then,
        # in which case the backward pass computes them again.
        hb = torch.index_select(h, 0, rows, out=_scratch("hb", (len(rows), h.shape[1]), h))
        ctx.token = _HB_OWNER[0] = object()
        pad = (len(bounds) - 1) * w - len(V)
        Vp = F.pad(V, (0, 0, 0, pad)) if pad else V  # (blocks * w, H)
        logits = _logits(hb, Vp, b_v, read, bounds, _scratch("logits", v.shape, b_v))
        ctx.save_for_backward(v, b_v, b_h, Wt, V, Vp, start, rows, read)
        ctx.by_slot, ctx.bounds, ctx.states = by_slot, bounds, len(h)
        # -log p(v_i | v_<i) = softplus(logit) - v_i logit, with one temporary (the cross-entropy op makes
        # several); softplus returns x itself for x > 20, which differs by exp(-20) at most.
        return F.softplus(logits).addcmul_(v, logits, value=-1).sum(-1).neg_()

    @staticmethod
    def backward(ctx, grad):
        v, b_v, b_h, Wt, V, Vp, start, rows, read = ctx.saved_tensors
        w, bounds = NADELogProb.PITCH_BLOCK, ctx.bounds
        if _HB_OWNER[0] is ctx.token:
            hb, logits = _scratch("hb", (len(rows), b_h.shape[1]), b_h), _scratch("logits", v.shape, b_v)
        else:
            hb = _hidden(b_h, Wt, start, ctx.by_slot).index_select(0, rows)
            logits = _logits(hb, Vp, b_v, read, bounds, torch.empty_like(b_v))
        d_logits = torch.sigmoid(logits)
        torch.sub(v, d_logits, out=d_logits).mul_(grad[:, None])  # (frames, D) = grad of b_v
        d_g = _scratch("g", (len(hb) * w,), hb).zero_().index_add_(0, read, d_logits.view(-1))  # int32 read
        grad_Vp, d_hb = torch.empty_like(Vp), _scratch("d_hb", hb.shape, hb)
        for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            d_gb = d_g[w * lo:w * hi].view(w, hi - lo)  # dL/dlogit at the state each logit read
            torch.mm(d_gb, hb[lo:hi], out=grad_Vp[b * w:(b + 1) * w])
            torch.mm(d_gb.T, Vp[b * w:(b + 1) * w], out=d_hb[lo:hi])
        torch.ops.aten.sigmoid_backward.grad_input(d_hb, hb, grad_input=d_hb)  # in place
        d_a = _scratch("a", (ctx.states, hb.shape[1]), hb).zero_().index_add_(0, rows, d_hb)  # (R, H)
        grad_Wt = torch.zeros_like(V)
        for rows_s, p in reversed(ctx.by_slot):  # W[:, p] feeds this state and the ones after it
            d_after = d_a.index_select(0, rows_s)  # final: later states were added in already
            grad_Wt.index_add_(0, p, d_after)
            d_a.index_add_(0, rows_s - 1, d_after)
        return None, d_logits, d_a.index_select(0, start), grad_Wt.T, grad_Vp[:len(V)]


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
