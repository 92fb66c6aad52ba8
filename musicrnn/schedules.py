"""Training curricula as Lightning callbacks: scheduled sampling (Bengio, Vinyals, Jaitly & Shazeer 2015)
and a curriculum of chunk lengths, short chunks first (curriculum learning, Bengio, Louradour, Collobert &
Weston 2009).

Both rewrite the training batch in ``on_train_batch_start``, before the training step reads it:
``ChunkCurriculum`` cuts its sequences into chunks; ``ScheduledSampling`` adds ``batch["inputs"]``, the
frames the recurrent core reads, while ``batch["x"]`` stays the target. List ``ChunkCurriculum`` first.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from musicrnn.errors import MusicrnnError

SCHEDULES = ("linear", "exponential", "inverse_sigmoid")


def teacher_forcing_probability(step: int, schedule: str, k: float, c: float = 0.0, floor: float = 0.0) -> float:
    """``epsilon_i`` of Bengio et al. (2015), section 2.4: the probability of feeding the true previous
    frame at training step ``i``.

    linear: ``max(floor, k - c i)``; exponential: ``k^i`` (``k < 1``); inverse_sigmoid:
    ``k / (k + exp(i / k))`` (``k >= 1``).
    """
    if schedule == "linear":
        return max(floor, k - c * step)
    if schedule == "exponential":
        return k ** step
    return k / (k + math.exp(min(step / k, 700.0)))  # exp(700) is near float's limit


@torch.no_grad()
def scheduled_inputs(model, x: torch.Tensor, p_sample: float) -> torch.Tensor:
    """The frames the core reads under scheduled sampling, ``(batch, time, 88)``.

    Frame by frame, each sequence's true frame ``x[:, t]`` is replaced with probability ``p_sample`` by a
    frame sampled from the model given the frames it has read so far: its own samples where they replaced
    the truth, so the pass is sequential. No gradient flows through the choice or the sample (as in the
    paper); dropout is off in this pass, as in ``SequenceModel.sample``.
    """
    was_training = model.training
    model.eval()
    state, out = model.core.initial_state(len(x)), []
    for t in range(x.shape[1]):
        h = (state[0] if isinstance(state, tuple) else state)[0]  # (batch, hidden): has read frames < t
        use_own = torch.rand(len(x), 1, device=x.device) < p_sample
        frame = torch.where(use_own, model.sample_frame(h, 1.0), x[:, t])  # (batch, 88)
        out.append(frame)
        _, state = model.core(frame[:, None], state)
    model.train(was_training)
    return torch.stack(out, dim=1)


class ScheduledSampling(L.Callback):
    """Scheduled sampling (Bengio, Vinyals, Jaitly & Shazeer 2015): while training, the core reads the
    model's own sampled frame instead of the true previous frame with probability ``1 - epsilon_i``,
    ``epsilon_i`` following a schedule of the optimizer step ``i`` (``teacher_forcing_probability``).

    Costs a sequential no-gradient pass per batch, with one ``sample_frame`` per step (an 88-step NADE
    pass for RNN-NADE, a Gibbs chain for RNN-RBM). Logs ``train/teacher_forcing`` (``epsilon_i``).

    Args:
        schedule: linear, exponential or inverse_sigmoid.
        k: the schedule's ``k`` (linear: start, <= 1; exponential: in (0, 1); inverse_sigmoid: >= 1).
        c: slope of the linear schedule, per step.
        floor: lowest ``epsilon`` of the linear schedule.
    """

    def __init__(self, schedule: str = "inverse_sigmoid", k: float = 1000.0, c: float = 0.0, floor: float = 0.0):
        if schedule not in SCHEDULES:
            raise MusicrnnError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        ok = {"linear": 0 <= floor <= k <= 1 and c > 0, "exponential": 0 < k < 1, "inverse_sigmoid": k >= 1}
        if not ok[schedule]:
            raise MusicrnnError("need 0 <= floor <= k <= 1 and c > 0 (linear), 0 < k < 1 (exponential) or "
                             "k >= 1 (inverse_sigmoid)")
        self.schedule, self.k, self.c, self.floor = schedule, k, c, floor

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        eps = teacher_forcing_probability(trainer.global_step, self.schedule, self.k, self.c, self.floor)
        if eps < 1:
            batch["inputs"] = scheduled_inputs(pl_module, batch["x"], 1 - eps)
        pl_module.log("train/teacher_forcing", eps, on_step=True, on_epoch=False, batch_size=1)


def chunk_batch(batch: dict, length: int) -> dict:
    """Cut every sequence of ``{"x": (batch, time, 88), "mask": (batch, time)}`` into chunks of ``length``
    frames -> ``(chunks, length, 88)``, ``(chunks, length)``; chunks with no frame left out. Each chunk is
    then a sequence of its own, read from the initial state, as ``chunk_len`` does in the data module."""
    x, mask = batch["x"], batch["mask"]
    pad = -x.shape[1] % length
    x = torch.nn.functional.pad(x, (0, 0, 0, pad)).reshape(-1, length, x.shape[2])
    mask = torch.nn.functional.pad(mask, (0, pad)).reshape(-1, length)
    keep = mask.any(1)
    return {"x": x[keep], "mask": mask[keep]}


class ChunkCurriculum(L.Callback):
    """Train on short chunks first and lengthen them: chunks of ``start_len * 2^(epoch // every_n_epochs)``
    frames, whole sequences once that exceeds the batch's length (a curriculum, Bengio et al. 2009: short
    chunks give short credit-assignment paths, whose gradients neither vanish nor explode). Logs
    ``train/chunk_len``.

    Args:
        start_len: chunk length in the first epochs, in frames.
        every_n_epochs: epochs between doublings.
    """

    def __init__(self, start_len: int = 8, every_n_epochs: int = 5):
        if start_len < 1 or every_n_epochs < 1:
            raise MusicrnnError(f"need start_len >= 1 and every_n_epochs >= 1, got {start_len}, {every_n_epochs}")
        self.start_len, self.every_n_epochs = start_len, every_n_epochs

    def chunk_len(self, epoch: int) -> int:
        return self.start_len * 2 ** (epoch // self.every_n_epochs)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if "inputs" in batch:
            raise MusicrnnError("list ChunkCurriculum before ScheduledSampling in trainer.callbacks")
        length = self.chunk_len(trainer.current_epoch)
        if length < batch["x"].shape[1]:
            batch.update(chunk_batch(batch, length))
        pl_module.log("train/chunk_len", float(min(length, batch["x"].shape[1])), on_step=False, on_epoch=True,
                      batch_size=1)
