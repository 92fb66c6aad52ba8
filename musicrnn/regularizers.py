"""Penalties on the recurrent matrix ``W_hh`` as Lightning callbacks: L2 and a spectral radius near 1
(``RecurrentPenalty``), and the vanishing-gradient regulariser Omega of Pascanu, Mikolov & Bengio (2013)
(``PascanuRegularizer``).

Each adds the gradient of its penalty to the parameters' gradients in ``on_before_optimizer_step``, after
the loss's backward pass: the models' training steps stay as they are, and it works under truncated BPTT
too. List it before ``GradientClipping`` so that the sum is clipped (a ValueError says so otherwise).
"""

from __future__ import annotations

import lightning as L
import torch

from musicrnn.callbacks import GradientClipping
from musicrnn.errors import MusicrnnError


def add_gradient(penalty: torch.Tensor, params: list[torch.nn.Parameter]) -> None:
    """``p.grad += d penalty / d p`` for each parameter that the penalty depends on."""
    grads = torch.autograd.grad(penalty, params, allow_unused=True)
    for p, g in zip(params, grads):
        if g is not None:
            p.grad = g if p.grad is None else p.grad.add_(g)


def check_before_clipping(trainer, callback: L.Callback) -> None:
    """A penalty's gradient must be in place before ``GradientClipping`` rescales the gradient."""
    order = list(trainer.callbacks)
    clips = [i for i, c in enumerate(order) if isinstance(c, GradientClipping)]
    if clips and clips[0] < order.index(callback):
        raise MusicrnnError(f"list {type(callback).__name__} before GradientClipping in trainer.callbacks")


def spectral_radius(w: torch.Tensor, squarings: int = 6, iterations: int = 30) -> torch.Tensor:
    """A differentiable estimate of ``rho(W) = max |lambda_i|`` of a square matrix ``w (n, n)``.

    Gelfand's formula, ``rho = lim ||W^k||^(1/k)``, at ``k = 2^squarings``: ``W^k`` by repeated squaring,
    each square rescaled to Frobenius norm 1 with the log of the scale kept (no overflow at rho = 20, no
    underflow at 0.05), then the largest singular value of ``W^k`` by power iteration with the singular
    vectors held constant, ``sigma = u^T W^k v``, so the gradient is defined even where eigenvalues repeat
    (the identity initialisation), where ``torch.linalg.eigvals``'s is not. It over-estimates rho by at most
    the factor ``cond(eigenvectors)^(1/k)`` (exact for normal matrices); a few per cent at k = 64.
    """
    n = w.shape[0]
    scale = torch.linalg.matrix_norm(w).clamp_min(1e-30)
    m, log_scale = w / scale, torch.log(scale)  # W^(2^j) = exp(log_scale) * m
    for _ in range(squarings):
        m = m @ m
        scale = torch.linalg.matrix_norm(m).clamp_min(1e-30)
        m, log_scale = m / scale, 2 * log_scale + torch.log(scale)
    with torch.no_grad():
        v = torch.randn(n, generator=torch.Generator().manual_seed(0)).to(w)
        for _ in range(iterations):
            u = m @ v
            u = u / u.norm().clamp_min(1e-30)
            v = m.T @ u
            v = v / v.norm().clamp_min(1e-30)
    sigma = (u @ m @ v).clamp_min(1e-30)
    return torch.exp((log_scale + torch.log(sigma)) / 2 ** squarings)


def recurrent_blocks(core) -> list[torch.Tensor]:
    """The recurrent matrix in use, one ``(hidden, hidden)`` block per gate (one for tanh/relu/sigmoid)."""
    return list(core.weights()[1].split(core.hidden))


class RecurrentPenalty(L.Callback):
    """``l2 ||W_hh||^2 + radius sum_g (rho(W_g) - target)^2`` on the recurrent matrix.

    ``W_g`` are the gate blocks of ``W_hh`` (one for plain cells; under weight normalisation, the matrix
    ``g V / ||V||`` in use); ``rho`` by ``spectral_radius``. The L2 term is the usual weight decay on
    ``W_hh`` alone; the radius term is the soft form of keeping the recurrent Jacobian's largest eigenvalue
    near 1 (Pascanu, Mikolov & Bengio 2013, section 3: rho < 1 is sufficient for gradients to vanish, and
    rho > 1 necessary for them to explode). Logs ``train/spectral_radius`` (the largest block's).

    Args:
        l2: weight of the L2 term.
        radius: weight of the spectral-radius term.
        target: the radius aimed at.
    """

    def __init__(self, l2: float = 0.0, radius: float = 0.0, target: float = 1.0):
        if l2 < 0 or radius < 0 or not (l2 or radius) or target <= 0:
            raise MusicrnnError("need l2 >= 0, radius >= 0, one of them > 0, and target > 0")
        self.l2, self.radius, self.target = l2, radius, target

    def on_fit_start(self, trainer, pl_module):
        check_before_clipping(trainer, self)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = [p for p in pl_module.core.parameters() if p.requires_grad]
        with torch.enable_grad():
            blocks = recurrent_blocks(pl_module.core)
            rho = torch.stack([spectral_radius(w) for w in blocks])
            penalty = self.l2 * sum(w.square().sum() for w in blocks) + self.radius * (rho - self.target).square().sum()
            add_gradient(penalty, params)
        pl_module.log("train/spectral_radius", rho.max().detach(), on_step=True, on_epoch=False, batch_size=1)


# ---- Pascanu, Mikolov & Bengio (2013)

DERIVATIVES = {  # f'(a) of each plain cell
    "tanh": lambda a: 1 - torch.tanh(a) ** 2,
    "relu": lambda a: (a > 0).to(a.dtype),
    "sigmoid": lambda a: torch.sigmoid(a) * (1 - torch.sigmoid(a)),
}


def check_plain_core(core, who: str) -> None:
    """``unrolled`` covers ``u_t = f(W_ih x_t + W_hh u_{t-1} + b)`` only: one matrix, no leak, no layer norm."""
    if core.cell not in DERIVATIVES or core.alpha_logit is not None or core.norm == "layer":
        raise MusicrnnError(f"{who} needs a tanh, relu or sigmoid cell without leaky integration or layer norm")


def unrolled(core, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run a plain core on ``x (batch, time, input)`` keeping each pre-activation as a graph node.

    ``a_t = W_ih x_t + W_hh u_{t-1} + b``, ``u_t = f(a_t)``. Returns ``cond (batch, time, hidden)``, what
    ``core(x)`` returns without dropout (``cond[:, t] = u_{t-1}``, ``u_{-1}`` the initial state), and
    ``[a_0, ..., a_{T-1}]``, each ``(batch, hidden)``, for gradients ``dE/da_t``.
    """
    w_ih, w_hh = core.weights()
    f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[core.cell]
    xw = torch.nn.functional.linear(x, w_ih, core.rnn.bias_ih_l0 + core.rnn.bias_hh_l0)
    u, states, pre = core.initial_state(x.shape[0])[0], [], []
    for t in range(x.shape[1]):
        states.append(u)
        pre.append(xw[:, t] + u @ w_hh.T)
        u = f(pre[-1])
    return torch.stack(states, dim=1), pre


def pascanu_omega(w_hh: torch.Tensor, a: torch.Tensor, grad_a: torch.Tensor, cell: str) -> torch.Tensor:
    """Omega of Pascanu, Mikolov & Bengio (2013), eq. 9, as the mean of its terms.

    With ``a_{k+1} = W_hh f(a_k) + W_ih x_{k+1} + b`` (their ``x_k`` is our pre-activation ``a_k``),
    ``da_{k+1}/da_k = W_hh diag(f'(a_k))``, and each term is
    ``( ||g_{k+1} W_hh diag(f'(a_k))|| / ||g_{k+1}|| - 1 )^2`` with ``g_{k+1} = dE/da_{k+1}``. ``a`` and
    ``grad_a``, both ``(batch, time, hidden)``, are held constant (detached): only the direct dependence
    on ``W_hh`` is differentiated, as in the paper. Terms whose ``g_{k+1}`` is zero (past a sequence's
    end, or dead rectifiers) are left out; the mean over the batch's (sequence, k) terms, rather than
    the paper's sum over k of one sequence, keeps the weight independent of length and batch size.
    """
    a, g = a[:, :-1].detach(), grad_a[:, 1:].detach()  # a_k and g_{k+1}: (batch, time - 1, hidden)
    g_norm = g.norm(dim=-1)
    keep = g_norm > 1e-12
    back = (g @ w_hh) * DERIVATIVES[cell](a)  # g_{k+1} W_hh diag(f'(a_k)), row vectors
    ratio = back.norm(dim=-1)[keep] / g_norm[keep]
    return (ratio - 1).square().mean() if keep.any() else w_hh.sum() * 0


def batch_omega(pl_module, x: torch.Tensor, mask: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
    """Omega for a batch ``x (batch, time, 88)``: ``dE/da_t`` from the model's own loss on the batch
    (without dropout), differentiable in the recurrent matrix; ``inputs``: the frames the core reads, when
    not ``x`` (``ScheduledSampling``)."""
    core = pl_module.core
    cond, pre = unrolled(core, x if inputs is None else inputs)
    loss, _ = pl_module.loss(cond, x, mask)
    grads = torch.autograd.grad(loss, pre, allow_unused=True)  # a_{T-1} feeds no scored frame: None
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(pre, grads)]
    return pascanu_omega(core.weights()[1], torch.stack(pre, 1), torch.stack(grads, 1), core.cell)


class PascanuRegularizer(L.Callback):
    """The vanishing-gradient regulariser Omega of Pascanu, Mikolov & Bengio (2013), weight decaying as 1/t.

    Omega (``pascanu_omega``) asks that the back-propagated error keep its norm from one step to the
    next. At each optimizer step it is computed on the step's batch by a second, step-by-step pass
    (a forward and a backward pass for ``dE/da``, then Omega's own backward), and
    ``weight / (1 + t / decay_steps) * dOmega/dW_hh`` is added to the gradient, ``t`` the optimizer step:
    the paper lets the weight decay as 1/t on the music tasks. Needs whole-sequence training
    (``tbptt_steps: null``) and a plain core (tanh, relu or sigmoid; no leak, no layer norm). Logs
    ``train/omega``.

    Args:
        weight: the regulariser's weight at step 0.
        decay_steps: optimizer steps at which the weight has halved; None keeps it constant.
    """

    def __init__(self, weight: float = 1.0, decay_steps: int | None = 1000):
        if weight <= 0 or (decay_steps is not None and decay_steps < 1):
            raise MusicrnnError("need weight > 0 and decay_steps >= 1 (or None)")
        self.weight, self.decay_steps = weight, decay_steps
        self.batch = None

    def on_fit_start(self, trainer, pl_module):
        check_plain_core(pl_module.core, "PascanuRegularizer")
        if not pl_module.automatic_optimization:
            raise MusicrnnError("PascanuRegularizer needs whole-sequence training (tbptt_steps: null)")
        check_before_clipping(trainer, self)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch

    def current_weight(self, step: int) -> float:
        return self.weight if self.decay_steps is None else self.weight / (1 + step / self.decay_steps)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = [p for p in pl_module.core.parameters() if p.requires_grad]
        with torch.enable_grad():
            omega = batch_omega(pl_module, self.batch["x"], self.batch["mask"], self.batch.get("inputs"))
            add_gradient(self.current_weight(trainer.global_step) * omega, params)
        pl_module.log("train/omega", omega.detach(), on_step=True, on_epoch=False, batch_size=1)
