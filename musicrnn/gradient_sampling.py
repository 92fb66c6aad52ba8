"""Sampling-based gradient regularisation after Chernodub & Nowicki (2016, arXiv:1606.07767): mini-batches
built from sequences chosen by their estimated contribution to the norm of the long-term components of
the gradient, so that the gradient's norm stays in a suitable range.

Only the paper's abstract is public; the statistic and the selection rule here are a reconstruction
(``../shared/REFERENCES.md``), not the authors' code:

- Score. The gradient of the recurrent matrix is ``dE/dW_hh = sum_k dE/da_k u_{k-1}^T`` over the steps
  ``k`` (``a_k = W_ih x_k + W_hh u_{k-1} + b`` the pre-activation); the terms of the first
  ``early_steps`` steps carry the errors of every later frame back to the start of the sequence, the
  long-term components. Each is of rank one, so its norm is ``||u_{k-1}|| ||dE/da_k||`` exactly, and a
  sequence's score is ``s_i = sum_{k < early_steps} ||u_{k-1}|| ||dE_i/da_k||``, with ``E_i`` its
  summed frame NLL divided by the pool's mean length. Both factors come from one ordinary forward and
  backward pass over the pool.
- Bound. A batch of sequences of the pool's mean length has loss ``mean_i E_i``; by the triangle
  inequality the norm of its long-term gradient is at most the batch's mean score.
- Selection. Draw a pool of ``pool_factor * M`` sequences uniformly (the data loader's batch), score
  them, and keep M: the M highest (top), M drawn without replacement with probability proportional to
  the score (proportional), or M consecutive in score order whose mean lies in ``[low, high]``, one such
  window drawn at random, else the one nearest to the range (range).
- The kept sequences are not reweighted: the point is to change what the gradient is made of, not to
  estimate the uniform mini-batch gradient, which selection biases.
"""

from __future__ import annotations

import lightning as L
import torch

from musicrnn.errors import MusicrnnError
from musicrnn.regularizers import check_plain_core, unrolled

RULES = ("top", "proportional", "range")


def long_term_scores(pl_module, x: torch.Tensor, mask: torch.Tensor, early_steps: int) -> torch.Tensor:
    """``s_i = sum_{k < early_steps} ||u_{k-1}|| ||dE_i/da_k||`` per sequence of ``x (pool, time, 88)``
    -> ``(pool,)``; ``E_i`` = summed frame NLL of sequence ``i`` / the pool's mean length (the model's
    loss, without dropout)."""
    cond, pre = unrolled(pl_module.core, x)  # cond[:, k] = u_{k-1}
    loss, _ = pl_module.loss(cond, x, mask)  # sum of frame NLLs / frames = mean_i E_i
    k = min(early_steps, x.shape[1])
    grads = torch.autograd.grad(loss * len(x), pre[:k], allow_unused=True)  # dE_i/da_k, (pool, hidden) each
    terms = [cond[:, j].norm(dim=-1) * g.norm(dim=-1) for j, g in enumerate(grads) if g is not None]
    return torch.stack(terms).sum(0).detach() if terms else x.new_zeros(len(x))


def select_by_score(scores: torch.Tensor, m: int, rule: str, low: float = 0.0, high: float = float("inf"),
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of the ``m`` of ``scores (pool,)`` that a batch keeps, by ``rule`` (see the module's text)."""
    if rule == "top":
        return scores.topk(m).indices
    if rule == "proportional":
        return torch.multinomial(scores.clamp_min(1e-12), m, generator=generator)
    order = scores.argsort()
    window_sums = torch.cat([scores.new_zeros(1), scores[order].cumsum(0)])
    means = (window_sums[m:] - window_sums[:-m]) / m  # mean of sorted[j:j + m]; non-decreasing in j
    gap = torch.maximum(low - means, means - high).clamp_min(0)
    inside = torch.nonzero(gap == 0).flatten()
    if len(inside):
        j = inside[torch.randint(len(inside), (), generator=generator)]
    else:
        j = gap.argmin()
    return order[j:j + m]


class GradientNormSampling(L.Callback):
    """Keep ``1 / pool_factor`` of each training batch, chosen by long-term gradient score (Chernodub &
    Nowicki 2016, as reconstructed in this module's text): set the data's ``batch_size`` to
    ``pool_factor`` times the batch wanted. Costs one extra step-by-step forward and backward pass over
    the pool. Needs a plain core (tanh, relu or sigmoid; no leak, no layer norm). Logs
    ``train/pool_score`` and ``train/batch_score`` (mean scores of the pool and of the kept sequences).

    Args:
        pool_factor: candidates per kept sequence (K).
        early_steps: the first steps whose gradient terms make the score.
        rule: top, proportional or range.
        low, high: the range of a batch's mean score (rule range).
        seed: seed of the random choices.
    """

    def __init__(self, pool_factor: int = 4, early_steps: int = 10, rule: str = "range", low: float = 0.0,
                 high: float = float("inf"), seed: int = 0):
        if rule not in RULES:
            raise MusicrnnError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        if pool_factor < 2 or early_steps < 1 or not 0 <= low <= high:
            raise MusicrnnError("need pool_factor >= 2, early_steps >= 1 and 0 <= low <= high")
        self.pool_factor, self.early_steps, self.rule, self.low, self.high = pool_factor, early_steps, rule, low, high
        self.generator = torch.Generator().manual_seed(seed)

    def on_fit_start(self, trainer, pl_module):
        check_plain_core(pl_module.core, "GradientNormSampling")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if "inputs" in batch:
            raise MusicrnnError("list GradientNormSampling before ScheduledSampling in trainer.callbacks")
        x, mask = batch["x"], batch["mask"]
        if len(x) < self.pool_factor:
            raise MusicrnnError(f"a batch of {len(x)} sequences is smaller than pool_factor {self.pool_factor}")
        with torch.enable_grad():
            scores = long_term_scores(pl_module, x, mask, self.early_steps).cpu()
        keep = select_by_score(scores, len(x) // self.pool_factor, self.rule, self.low, self.high, self.generator)
        length = int(mask[keep.to(mask.device)].sum(1).max())  # drop the padding nobody kept needs
        batch.update({"x": x[keep.to(x.device), :length], "mask": mask[keep.to(x.device), :length]})
        pl_module.log("train/pool_score", scores.mean(), on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("train/batch_score", scores[keep].mean(), on_step=True, on_epoch=False, batch_size=1)

    def state_dict(self):  # a resumed run draws the same batches
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict):
        self.generator.set_state(state_dict["generator"])
