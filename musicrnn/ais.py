"""The partition function ``Z`` of binary RBMs: annealed importance sampling (Salakhutdinov & Murray 2008)
from a base distribution fitted to each RBM, and exact enumeration for small ones.

An RBM here is ``b_v (n, D)``, ``b_h (n, H)``, ``W (D, H)``: ``n`` RBMs (one per frame of the RNN-RBM) that
share ``W`` and differ in their biases, with ``p(v, h) = exp(b_v.v + b_h.h + v W h) / Z``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# The default budget of test and ``evaluate``: runs and temperatures per frame. On the JSB RNN-RBM's test
# set (4,725 frames) 24 runs x 300 equally spaced temperatures from a 64-chain base gave a standard error
# of the nll of 0.0026, against 0.0027 for the 100 runs x 300 used before (20 runs: 0.0028); the
# square-root schedule of ``ais_log_z`` gives the same from 240 (see there, and README, "Evaluation").
AIS_RUNS, AIS_STEPS = 24, 240


# oneDNN's float32 product kernel, which ``torch.compile`` emits for linear layers on the CPU; eager PyTorch
# sends float32 products to MKL instead. Measured on the 2-core AMD EPYC development machine, one thread:
# a (6,144 x 88) by (88 x 150) product takes 1.8 ms in MKL (its AVX2 path on AMD) and 0.85 ms in oneDNN
# (AVX-512), the same float32 arithmetic; but a oneDNN call costs more to start, and MKL's small products
# split better over threads, so where oneDNN starts to win grows with the threads: a product each way
# between 88 and 150 units with a per-row bias (CD-k's sweep; best of 5 x 300), MKL / oneDNN in us, one
# thread: 64 rows 40/43, 80 rows 48/46, 128 rows 74/59, 256 rows 145/92; two threads: 128 rows 42/48,
# 160 rows 52/53, 192 rows 61/57, 256 rows 79/69. So oneDNN from ``ONEDNN_ROWS_PER_THREAD`` rows per thread
# (measured on one and two threads only; for more, a guess that keeps small products on MKL's threads).
# (Until 2026-11-23 from 256 rows whatever the threads: the JSB RNN-RBM config's batches of ~240 frames ran
# CD-15 on MKL, 1.6x slower on one thread.)
ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
ONEDNN_ROWS_PER_THREAD = 80


def linear(x, w, bias=None):
    """``x (..., K)`` times ``w (N, K)`` transposed, plus ``bias`` (broadcasting to ``(..., N)``) if given, as
    ``F.linear``: ``(..., N)``. On the CPU, in float32, without autograd and for at least
    ``ONEDNN_ROWS_PER_THREAD`` rows per thread, through oneDNN (see above); below that a 2-d ``x`` with a
    bias takes one ``addmm`` (at 60 rows a separate addition cost ~2 us against the product's ~19 us)."""
    if (x.numel() >= ONEDNN_ROWS_PER_THREAD * torch.get_num_threads() * x.shape[-1] and ONEDNN  # cheapest first
            and x.device.type == "cpu"
            and x.dtype == w.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))):
        out = torch.ops.mkldnn._linear_pointwise(x, w.contiguous(), None, "none", [], "")
    elif bias is not None and x.dim() == 2:
        return torch.addmm(bias, x, w.T)
    else:
        out = torch.matmul(x, w.T)
    return out if bias is None else out.add_(bias)


def bernoulli(p, out=None):
    """Binary samples with probabilities ``p``; about twice as fast as ``torch.bernoulli`` on CPU.
    ``out``: a buffer of ``p``'s shape to draw into (and return), instead of a new tensor."""
    u = torch.rand_like(p) if out is None else torch.rand(p.shape, out=out)
    return u.lt_(p)  # 1.0 where u < p, in u's own dtype: no bool tensor, no conversion


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


class Uniform:
    """Uniform ``[0, 1)`` draws on ``like``'s device and dtype, each call into a reused buffer per shape.

    On the CPU they come from numpy's PCG64, seeded from ``generator`` (default: torch's global one), so
    ``torch.manual_seed`` still fixes them. In float32, each 64-bit word of the generator's raw output
    makes two draws: the top 24 bits of each half, scaled in three in-place passes; the same values on
    the same 2^-24 grid as numpy's float32 ``random``, whose scalar conversion loop costs more than the
    generator. One thread here, 731k draws (AIS on 128 frames x 24 runs, one step): about 1.6 ns a draw
    against 2.6 ns for numpy's float32 ``random`` and 3 ns for ``torch.rand`` (random numbers were
    40% of AIS's time).

    ``bits=16`` (float32 only): four draws a word, on the grid ``(k + 1/2) / 2^16``, so a draw ``u < p``
    fires with a probability within ``2^-17`` of ``p`` (and never at ``p = 0``, always at ``p = 1``). The
    generator's time halves; for CD-k's chains (``musicrnn.models.rbm.gibbs``), whose gradient is biased by
    the chain's length and noisy by a whole draw per unit anyway. AIS keeps 24 bits: its weights are exact
    only if each step leaves its distribution unchanged.
    """

    def __init__(self, like: torch.Tensor, generator: torch.Generator | None = None, bits: int = 24):
        if bits not in (16, 24):
            raise ValueError(f"bits must be 16 or 24, got {bits}")
        self.like, self.buffers, self.bits = like, {}, bits
        seed = int(torch.randint(2 ** 62, (), generator=generator))
        self.rng = np.random.default_rng(seed) if like.device.type == "cpu" else None

    def __call__(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.rng is None:
            return torch.rand(shape, dtype=self.like.dtype, device=self.like.device)
        if shape not in self.buffers:
            self.buffers[shape] = torch.empty(shape, dtype=self.like.dtype)
        buf = self.buffers[shape]
        if buf.dtype != torch.float32:
            self.rng.random(out=buf.numpy(), dtype=np.float64)
            return buf
        n = buf.numel()
        if self.bits == 16:
            words = self.rng.bit_generator.random_raw((n + 3) // 4).view(np.int16)[:n]  # [-2^15, 2^15)
            return buf.copy_(torch.from_numpy(words).view(shape)).mul_(2 ** -16).add_(0.5 + 2 ** -17)
        words = self.rng.bit_generator.random_raw((n + 1) // 2).view(np.int32)[:n]  # n signed 32-bit draws
        top = torch.from_numpy(words).bitwise_right_shift_(8)  # their top 24 bits: [-2^23, 2^23)
        return buf.copy_(top.view(shape)).mul_(2 ** -24).add_(0.5)


def gibbs_sweep(v, b_v, b_h, W, Wt, u_h, u_v):
    """One block Gibbs sweep v -> h -> v' of RBMs: ``v (..., D)``, biases broadcasting to ``(..., D)`` and
    ``(..., H)``, ``W (D, H)`` and ``Wt = W.T`` contiguous, uniform draws ``u_h (..., H)`` and ``u_v (..., D)``.
    Returns ``(p(h | v), p(v' | h), v')``. A binary draw is ``u < p`` written straight into a float tensor:
    one pass, where ``ceil(p - u)`` takes two and ``(u < p).float()`` two and a bool tensor."""
    p_h = linear(v, Wt, b_h).sigmoid_()
    h = torch.lt(u_h, p_h, out=torch.empty_like(p_h))
    p_v = linear(h, W, b_v).sigmoid_()
    return p_h, p_v, torch.lt(u_v, p_v, out=torch.empty_like(p_v))


def fit_base(b_v, b_h, W, chains: int = 64, steps: int = 20, burn: int = 5, eps: float = 1e-3,
             generator: torch.Generator | None = None):
    """A factorial distribution close to each RBM: the logits ``(b0 (n, D), c0 (n, H))`` of its visible
    and hidden marginals, averaged (as conditional probabilities, which is less noisy than averaging
    samples) over ``chains`` Gibbs chains of ``steps`` steps after ``burn``; clamped to ``[eps, 1 - eps]``
    so the base covers every state.

    Why: AIS needs few runs when its base is close to the target. On the JSB RNN-RBM checkpoint, AIS
    log-weights at 300 temperatures spread with a standard deviation of 1.18 from the frame's visible
    biases alone (the previous base, hidden units uniform at ``beta = 0``) and 0.62-0.73 from this one;
    fitting only the visible marginals gave 1.0: most of the gain is in the hidden layer, which the old
    base left uniform. More chains fit the rarer chords too: with 20 runs on the JSB test set the nll's
    standard error was 0.0032 from 16 chains and 0.0028 from 64 or 128.
    """
    n, D = b_v.shape
    H = b_h.shape[1]
    uniform = Uniform(W, generator)
    bv, bh = b_v[:, None], b_h[:, None]  # (n, 1, .): broadcast over the chains
    Wt = W.T.contiguous()  # (H, D)
    u = uniform((n, chains, D))
    v = torch.lt(u, torch.sigmoid(bv), out=torch.empty_like(u))  # a draw as in ``gibbs_sweep``
    sum_v, sum_h = b_v.new_zeros(n, D), b_v.new_zeros(n, H)
    for step in range(steps):
        u = uniform((n, chains, H + D))  # one draw for both layers
        p_h, p_v, v = gibbs_sweep(v, bv, bh, W, Wt, u[..., :H], u[..., H:])  # (n, chains, .)
        if step >= burn:
            sum_v += p_v.sum(1)
            sum_h += p_h.sum(1)
    k = chains * (steps - burn)
    return torch.logit((sum_v / k).clamp_(eps, 1 - eps)), torch.logit((sum_h / k).clamp_(eps, 1 - eps))


def _ratio_step_limit(b0, dv, W, limit: float = 80.0) -> float:
    """The largest step in ``beta`` at which ``ais_log_z`` may take the visible units' log-weight gain as a
    log of a product of sigmoid ratios in float32; 0 when no step may. Every visible input ``b0 + beta a``
    must stay within ``+-limit`` (past 88, ``sigmoid(-x)`` underflows to 0), and the product of a step's 88
    ratios, each at most ``exp(|a_i| * step)``, must not overflow. Bounds over every hidden state:
    ``a_i = dv_i + (W h)_i`` lies between ``dv_i`` plus the sum of row i's negative weights and ``dv_i``
    plus the sum of its positive ones. Larger steps take the softplus form, exact at any size. On the
    test frames of the four committed RNN-RBMs the first bound reaches 70.5 (JSB), 61.5 (Nottingham),
    56.5 (MuseData) and 50.5 (Piano-midi.de), and the sum of ``|a_i|`` 2,910: steps up to 0.027 take the
    ratios, so of 240 square-root-spaced temperatures only the first step (0.065) takes softplus.
    """
    top = dv + W.clamp(min=0).sum(1)  # (n, D)
    bottom = dv + W.clamp(max=0).sum(1)
    reach = torch.maximum(top.abs(), bottom.abs())  # max |a| per visible unit
    if (b0.abs() + reach).max() > limit:
        return 0.0
    return limit / max(float(reach.sum(-1).max()), 1e-30)


def ais_log_z(b_v, b_h, W, runs: int = AIS_RUNS, steps: int = AIS_STEPS, base_chains: int = 64,
              generator: torch.Generator | None = None):
    """AIS estimate of ``log Z`` of each RBM; returns ``(log_z (n,), var (n,))``, ``var`` the delta-method
    variance of ``log_z`` over the runs (its square root is the standard error).

    Path: ``p_beta(v, h) ~ exp((1 - beta)(b0.v + c0.h) + beta (b_v.v + b_h.h + v W h))`` from ``beta = 0``
    (the factorial base of ``fit_base``, ``base_chains`` chains) to 1 (the RBM) in ``steps`` steps,
    ``beta_k = sqrt(k / steps)``: denser near 1 (Salakhutdinov & Murray also spend most temperatures
    there), where the fitted base is furthest from ``p_beta``. Measured on ~1,150 validation frames of
    each committed RNN-RBM (every k-th), 24 runs, as the standard error of the mean log Z scaled to 4,725
    frames: JSB, equal steps x 300: 0.00261 and 0.00262 (two seeds), square-root steps x 300: 0.00229,
    x 240: 0.00252 and 0.00255, x 200: 0.00271 (squared steps, denser near 0, x 300: 0.00323); MuseData
    0.00125 equal x 300 against 0.00117 square-root x 240; Nottingham 0.00426 against 0.00427; Piano-midi.de
    0.00071 both; with 10 runs x 100 and 20 x 300 (the validation budgets) square-root steps were as good
    or better too. Not for every RBM: with weights of scale 20 (``tests/test_ais.py``) the big first steps
    cost accuracy, and 1,000 temperatures missed the exact log Z by up to 0.09 where equal steps missed
    by 0.05. The chains live in the hidden layer with the visible one summed out,
    ``log p*_beta(h) = ((1 - beta) c0 + beta b_h).h + sum_i softplus(b0 + beta (b_v - b0 + W h))_i``:
    the 88 visible units are fewer than the hidden ones, so this costs fewer terms per step than the
    visible-layer form. Each step adds ``log p*_k(h) - log p*_{k-1}(h)`` to the log-weight
    and then moves ``h`` by one Gibbs sweep (v given h, h given v) that leaves ``p_k`` invariant. All
    ``n * runs`` chains advance together, as ``(n, runs, .)`` tensors.

    AIS is unbiased for ``Z``, so the log of the mean weight is low on average, by about
    ``Var(w) / (2 runs E[w]^2)`` (second-order delta method): the estimate adds that term back, computed
    from the runs themselves (``var / 2`` below). On the JSB RNN-RBM checkpoint's 4,725 test frames at
    20 runs x 300 temperatures this moved the nll from 5.657 to 5.682, where an independent check with
    1,000 temperatures x 10 runs read 5.68. ``evaluate --ais-bias`` measures what remains against a
    run with ten times the temperatures.
    """
    n, D = b_v.shape
    H = b_h.shape[1]
    b0, c0 = fit_base(b_v, b_h, W, base_chains, generator=generator)
    dv, dh = (b_v - b0)[:, None], (b_h - c0)[:, None]  # (n, 1, D), (n, 1, H): target minus base
    b0_, c0_ = b0[:, None], c0[:, None]
    dh_col = dh.transpose(1, 2).contiguous()  # (n, H, 1)
    Wt = W.T.contiguous()  # (H, D)
    ratio_step = _ratio_step_limit(b0, dv[:, 0], W)
    uniform = Uniform(W, generator)
    u = uniform((n, runs, H))
    h = torch.lt(u, torch.sigmoid(c0_), out=torch.empty_like(u))  # exact base draws, as in ``gibbs_sweep``
    a = linear(h, W)  # (n, runs, D) = W h: the visible input at beta is b0 + beta * (dv + a)
    hd = torch.bmm(h, dh_col)[..., 0]  # (n, runs): (b_h - c0).h
    log_w = W.new_zeros(n, runs, dtype=torch.float64)
    betas = torch.linspace(0, 1, steps + 1, dtype=torch.float64).sqrt_().tolist()
    for b_prev, b in zip(betas[:-1], betas[1:]):
        # The visible units' share of the log-weight, sum_i softplus(x_i) - softplus(x'_i) with visible inputs
        # x = b0 + b (dv + a) and x' = b0 + b_prev (dv + a), is the log of prod_i s'_i / s_i with
        # s = sigmoid(-x) = p(v_i = 0): two sigmoids, a division and one log per chain instead of 176
        # softplus (``_ratio_step_limit`` says when).
        s = torch.sub(-b0_ - b * dv, a, alpha=b).sigmoid_()  # (n, runs, D)
        if b - b_prev <= ratio_step:
            gain = torch.sub(-b0_ - b_prev * dv, a, alpha=b_prev).sigmoid_().div_(s).prod(-1).log_()
        else:
            gain = F.softplus(torch.add(b0_ + b * dv, a, alpha=b)).sum(-1) \
                .sub_(F.softplus(torch.add(b0_ + b_prev * dv, a, alpha=b_prev)).sum(-1))
        log_w += gain.add_(hd, alpha=b - b_prev)
        # Gibbs sweep at beta, drawn as in ``gibbs_sweep`` but into the probabilities' own buffers.
        v = torch.gt(uniform((n, runs, D)), s, out=s)  # v_i = 1 with probability 1 - s_i
        x = linear(v, Wt * b, c0_ + b * dh).sigmoid_()  # p(h = 1 | v) at beta: (n, runs, H)
        h = torch.lt(uniform((n, runs, H)), x, out=x)
        hd = torch.bmm(h, dh_col)[..., 0]
        a = linear(h, W)
    log_z0 = (F.softplus(b0).sum(-1) + F.softplus(c0).sum(-1)).double()
    log_mean_w = torch.logsumexp(log_w, 1) - math.log(runs)
    w = torch.exp(log_w - log_w.max(1, keepdim=True).values)
    var = w.var(1) / (runs * w.mean(1) ** 2) if runs > 1 else torch.zeros_like(log_mean_w)
    return (log_z0 + log_mean_w + var / 2).to(W.dtype), var
