"""Simplified Nesterov momentum (Bengio, Boulanger-Lewandowski & Pascanu 2013, section 3.5).

Classical Nesterov momentum evaluates the gradient at the look-ahead point ``theta + mu v``. Storing the
look-ahead parameters ``Theta_t = theta_t + mu_t v_t`` instead turns it into an ordinary one-gradient
step at the stored parameters:

    v_t     = mu_{t-1} v_{t-1} - lr grad f(Theta_{t-1})
    Theta_t = Theta_{t-1} + mu_t mu_{t-1} v_{t-1} - (1 + mu_t) lr grad f(Theta_{t-1})
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

from musicrnn.errors import MusicrnnError


class SimplifiedNesterov(Optimizer):
    """Nesterov momentum on look-ahead parameters; ``momentum`` (``mu_t``) may change between steps.

    Each parameter's state keeps the velocity ``v_{t-1}`` and the momentum ``mu_{t-1}`` of its previous
    step, so a schedule (``musicrnn.callbacks.NesterovMomentum``) only writes ``group["momentum"]``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: ``mu``, in ``[0, 1)``.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9):
        if lr < 0:
            raise MusicrnnError(f"lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise MusicrnnError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:  # the closure runs first: schedules set group["momentum"] inside it
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # v_0 = 0, so mu_0 does not matter
                    state["velocity"], state["prev_momentum"] = torch.zeros_like(p), mu
                v, mu_prev = state["velocity"], state["prev_momentum"]
                p.add_(v, alpha=mu * mu_prev).add_(p.grad, alpha=-(1 + mu) * lr)  # Theta_t
                v.mul_(mu_prev).add_(p.grad, alpha=-lr)  # v_t
                state["prev_momentum"] = mu
        return loss
