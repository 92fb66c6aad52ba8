"""Training techniques of Bengio, Boulanger-Lewandowski & Pascanu (2013) and Pascanu, Mikolov & Bengio
(2013) as Lightning callbacks: gradient clipping, a momentum and learning-rate schedule, and a plot of
how the gradient reaching the hidden state grows or fades with distance (exploding / vanishing).

All of them act in ``on_before_optimizer_step``, which Lightning calls under automatic and manual
optimisation alike (truncated BPTT uses manual), after the backward pass and before the update.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from musicrnn.errors import MusicrnnError


class GradientClipping(L.Callback):
    """Clip the gradient before each optimizer step, and log its norm.

    ``mode="norm"`` (Pascanu et al. 2013): when the norm of the whole gradient, all parameters together,
    is at least ``threshold``, rescale it to ``g * threshold / ||g||`` (its direction is kept).
    ``mode="value"``: clamp every element to ``[-threshold, threshold]``.

    What it adds over the Trainer's ``gradient_clip_val``: it logs ``train/grad_norm`` (the norm before
    clipping, each step) and ``train/clip_fraction`` (the fraction of the epoch's steps that were clipped),
    and it also works under manual optimisation, where ``gradient_clip_val`` is refused.
    ``threshold=inf`` only measures: run it so to pick a threshold (the paper's heuristic: half to ten
    times the average norm).
    """

    def __init__(self, threshold: float = 1.0, mode: str = "norm"):
        if mode not in ("norm", "value"):
            raise MusicrnnError(f"unknown mode {mode!r}; choose norm or value")
        if threshold <= 0:
            raise MusicrnnError(f"threshold must be positive, got {threshold}")
        self.threshold, self.mode = threshold, mode
        self.steps, self.clipped = 0, 0  # this epoch's

    def on_train_epoch_start(self, trainer, pl_module):
        self.steps, self.clipped = 0, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if self.mode == "norm":
            clipped = norm >= self.threshold
            scale = torch.where(clipped, self.threshold / norm, torch.ones_like(norm))  # no host sync
            for g in grads:
                g.mul_(scale)
        else:
            clipped = torch.stack([g.abs().max() for g in grads]).max() > self.threshold
            for g in grads:
                g.clamp_(-self.threshold, self.threshold)
        self.steps += 1
        self.clipped = self.clipped + clipped.long()  # a tensor: no host sync per step
        pl_module.log("train/grad_norm", norm, on_step=True, on_epoch=False, batch_size=1)

    def on_train_epoch_end(self, trainer, pl_module):
        # Counted here, not left to Lightning's epoch means: those lose steps when a batch makes several
        # (truncated BPTT) in an epoch's first batch.
        if self.steps:
            pl_module.log("train/clip_fraction", self.clipped / self.steps, on_step=False, on_epoch=True)


def momentum_schedule(step: int, schedule: str, mu_max: float, mu_start: float, ramp_steps: int) -> float:
    """``mu_t`` for optimizer step ``t`` (from 0).

    constant: ``mu_max``; linear: from ``mu_start`` to ``mu_max`` over ``ramp_steps`` steps;
    sutskever (Sutskever et al. 2013): ``min(1 - 2^(-1 - log2(floor(t / 250) + 1)), mu_max)``.
    """
    if schedule == "constant":
        return mu_max
    if schedule == "linear":
        return mu_start + (mu_max - mu_start) * min(step / ramp_steps, 1.0)
    return min(1 - 2 ** (-1 - math.log2(step // 250 + 1)), mu_max)


class NesterovMomentum(L.Callback):
    """Set the momentum ``mu_t`` of every parameter group before each step, and halve the learning rate
    when the validation NLL of an epoch rises (the paper's music setting); logs ``train/momentum`` and
    ``train/lr``.

    Meant for ``musicrnn.optim.SimplifiedNesterov``; it writes ``group["momentum"]``, so it drives
    ``torch.optim.SGD(momentum=..., nesterov=True)`` too.

    Args:
        schedule: constant, linear or sutskever (see ``momentum_schedule``).
        mu_max: the momentum (constant), the end of the ramp (linear), the cap (sutskever).
        mu_start: start of the linear ramp.
        ramp_steps: optimizer steps of the linear ramp.
        lr_decay: factor on the learning rate after an epoch whose ``monitor`` is higher than the
            previous epoch's (1.0 never changes it).
        monitor: the validation metric watched for ``lr_decay``.
    """

    def __init__(self, schedule: str = "constant", mu_max: float = 0.9, mu_start: float = 0.5,
                 ramp_steps: int = 1000, lr_decay: float = 0.5, monitor: str = "val/nll"):
        if schedule not in ("constant", "linear", "sutskever"):
            raise MusicrnnError(f"unknown schedule {schedule!r}; choose constant, linear or sutskever")
        if not (0 <= mu_start < 1 and 0 <= mu_max < 1 and ramp_steps >= 1 and 0 < lr_decay <= 1):
            raise MusicrnnError("need 0 <= mu_start, mu_max < 1, ramp_steps >= 1 and 0 < lr_decay <= 1")
        self.schedule, self.mu_max, self.mu_start, self.ramp_steps = schedule, mu_max, mu_start, ramp_steps
        self.lr_decay, self.monitor = lr_decay, monitor
        self.last_value: float | None = None  # the monitored metric after the previous epoch

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        mu = momentum_schedule(trainer.global_step, self.schedule, self.mu_max, self.mu_start, self.ramp_steps)
        for group in optimizer.param_groups:
            group["momentum"] = mu
        pl_module.log("train/momentum", mu, on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=1)

    def on_validation_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.last_value is not None and value > self.last_value:
            for opt in trainer.optimizers:
                for group in opt.param_groups:
                    group["lr"] *= self.lr_decay
        self.last_value = value

    def state_dict(self):
        return {"last_value": self.last_value}

    def load_state_dict(self, state_dict):
        self.last_value = state_dict["last_value"]


class HiddenGradientPlot(L.Callback):
    """Plot ``||dL/du_t||`` against ``t`` for one training batch: the exploding / vanishing picture.

    ``u_t`` is the state that has read frames ``< t``; the gradient at it is the total derivative, through
    every later step. Two curves, on a log scale: ``L`` the batch's whole loss, and ``L_T`` the loss of
    frame ``T`` alone (the last frame of the batch's shortest sequence), whose gradient at ``u_t``,
    ``t <= T``, shows directly how a signal ``T - t`` frames back grows or fades. The norm is over the
    batch and the hidden units; exact zeros (dead rectifiers) are left as gaps. Written every
    ``every_n_epochs`` epochs to ``<log dir>/hidden_grad_epoch<N>.png`` and, for TensorBoard or W&B,
    logged to the logger as an image (CSV: the file only).
    """

    def __init__(self, every_n_epochs: int = 1):
        if every_n_epochs < 1:
            raise MusicrnnError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.batch = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.batch = batch  # the epoch's first batch, plotted at the epoch's end

    def hidden_gradients(self, pl_module, x, mask) -> dict[str, torch.Tensor]:
        """``{curve: ||dL/du_t|| (time,)}`` for ``x (batch, time, 88)``, ``u_t`` the state that has read
        frames ``< t`` (the core's ``cond[:, t]``); in eval mode (no dropout)."""
        was_training = pl_module.training
        pl_module.eval()
        T = int(mask.sum(1).min()) - 1  # every sequence is still playing at frame T
        last = torch.zeros_like(mask)
        last[:, T] = True
        curves = {}
        # cuDNN's RNN has no backward in eval mode; the plain kernels do.
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            for name, m in (("L", mask), ("L_T", last)):
                # Frame by frame, so that each u_t is a node of the graph: the gradient at it is the total
                # derivative, through every later step (the fused kernels hide the intermediate states).
                state, hs = pl_module.core.initial_state(len(x)), []
                for t in range(x.shape[1]):
                    hs.append(state[0] if isinstance(state, tuple) else state)  # (1, batch, hidden)
                    _, state = pl_module.core(x[:, t:t + 1], state)
                cond = torch.cat(hs).transpose(0, 1)  # (batch, time, hidden): the core's cond, no dropout
                loss, _ = pl_module.loss(cond, x, m)
                g = torch.stack(torch.autograd.grad(loss, hs))  # (time, 1, batch, hidden)
                curves[name] = torch.linalg.vector_norm(g, dim=(1, 2, 3)).detach().cpu()
        curves["L_T"] = curves["L_T"][:T + 1]  # u_t for t > T does not reach frame T
        pl_module.train(was_training)
        return curves

    def on_train_epoch_end(self, trainer, pl_module):
        if self.batch is None or (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        curves = self.hidden_gradients(pl_module, self.batch["x"], self.batch["mask"])
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        for name, norm in curves.items():
            ax.semilogy(norm.masked_fill(norm == 0, float("nan")).numpy(), label=name)
        ax.set(xlabel="t (frame)", ylabel="||dL / du_t||", title=f"epoch {trainer.current_epoch}")
        ax.legend()
        fig.tight_layout()
        path = Path(trainer.log_dir or trainer.default_root_dir) / f"hidden_grad_epoch{trainer.current_epoch}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        self.log_image(trainer.logger, fig, path, trainer.global_step)

    @staticmethod
    def log_image(logger, fig, path: Path, step: int) -> None:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure("diagnostics/hidden_grad", fig, global_step=step)
        elif isinstance(logger, WandbLogger):
            logger.log_image("diagnostics/hidden_grad", [str(path)], step=step)
