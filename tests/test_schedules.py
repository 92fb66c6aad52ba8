import math

import pytest
import torch
from conftest import tiny_batch

from musicrnn.models import RNN
from musicrnn.schedules import (ChunkCurriculum, ScheduledSampling, chunk_batch, scheduled_inputs,
                                teacher_forcing_probability)


def test_teacher_forcing_schedules():
    linear = [teacher_forcing_probability(i, "linear", k=1.0, c=0.1, floor=0.2) for i in (0, 5, 8, 100)]
    assert linear == pytest.approx([1.0, 0.5, 0.2, 0.2])
    assert [teacher_forcing_probability(i, "exponential", k=0.5) for i in (0, 1, 3)] == pytest.approx([1, 0.5, 0.125])
    sig = [teacher_forcing_probability(i, "inverse_sigmoid", k=10.0) for i in (0, 10 * math.log(10), 10 ** 6)]
    assert sig == pytest.approx([10 / 11, 0.5, 0.0])
    for bad in ({"schedule": "cosine"}, {"schedule": "exponential", "k": 1.0},
                {"schedule": "inverse_sigmoid", "k": 0.5}, {"schedule": "linear", "k": 1.0, "c": 0.0}):
        with pytest.raises(ValueError):
            ScheduledSampling(**bad)


def copy_model():
    """An RNN whose sample of frame t is the frame it read at t - 1 (tanh units saturate at +-1), and a
    fair coin for frame 0 (zero initial state)."""
    model = RNN(hidden=88, cell="tanh", learn_init=False)
    r = model.core.rnn
    with torch.no_grad():
        r.weight_ih_l0.copy_(20 * torch.eye(88))
        r.weight_hh_l0.zero_()
        r.bias_ih_l0.fill_(-10.0)
        r.bias_hh_l0.zero_()
        model.out.weight.copy_(50 * torch.eye(88))
        model.out.bias.zero_()
    return model


def test_scheduled_inputs_feed_the_models_own_samples_one_step_after_another():
    torch.manual_seed(0)
    model, x = copy_model(), tiny_batch(batch=64, time=12)["x"]
    assert torch.equal(scheduled_inputs(model, x, 0.0), x)
    own = scheduled_inputs(model, x, 1.0)
    # The model copies the frame it read last; fed its own frames, it copies its first one throughout
    # (a parallel, two-pass approximation would copy the true x[:, t - 1] instead).
    assert torch.equal(own, own[:, :1].expand(-1, 12, -1))
    assert 0.4 < own[:, 0].mean() < 0.6
    # p = 1/2: a frame is the model's (a copy of the frame read before) about half the time; x's random
    # frames copy their predecessor almost never.
    mixed = scheduled_inputs(model, x, 0.5)
    copies = (mixed[:, 1:] == mixed[:, :-1]).all(-1) & ~(x[:, 1:] == mixed[:, 1:]).all(-1)
    true = (mixed == x).all(-1).float().mean()
    assert 0.8 < float(copies.float().mean()) / 0.5 < 1.2 and 0.4 < float(true) < 0.6


class SeenBatches(RNN):
    """Records the batches its training step receives."""

    def training_step(self, batch, batch_idx):
        self.seen = getattr(self, "seen", []) + [{k: v.clone() for k, v in batch.items()}]
        return super().training_step(batch, batch_idx)


def test_scheduled_sampling_callback_reaches_the_training_step(fit_tiny):
    torch.manual_seed(0)
    model = SeenBatches(hidden=8, lr=0.0)
    trainer = fit_tiny(model, [ScheduledSampling("linear", k=0.0, c=1.0)])  # always sample
    batch = model.seen[0]
    assert "inputs" in batch and not torch.equal(batch["inputs"], batch["x"])
    assert float(trainer.callback_metrics["train/teacher_forcing"]) == 0.0
    with torch.no_grad():  # the core read the inputs; the loss scored the true frames
        loss, _ = model.loss(model.core(batch["inputs"])[0], batch["x"], batch["mask"])
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(float(loss))
    model = SeenBatches(hidden=8)
    fit_tiny(model, [ScheduledSampling("exponential", k=0.5)], batches=1)  # epsilon_0 = 1: the truth
    assert "inputs" not in model.seen[0]


def test_chunk_batch():
    batch = tiny_batch(batch=3, time=10)  # lengths 7, 10, 10
    chunks = chunk_batch(batch, 4)
    assert chunks["x"].shape == (8, 4, 88) and chunks["mask"].shape == (8, 4)  # 2 + 3 + 3 chunks
    assert chunks["mask"].sum(1).tolist() == [4, 3, 4, 4, 2, 4, 4, 2]
    torch.testing.assert_close(chunks["x"][chunks["mask"]], batch["x"][batch["mask"]], rtol=0, atol=0)


def test_chunk_curriculum_lengthens_chunks(fit_tiny):
    curriculum = ChunkCurriculum(start_len=2, every_n_epochs=2)
    assert [curriculum.chunk_len(e) for e in range(6)] == [2, 2, 4, 4, 8, 8]
    model = SeenBatches(hidden=8)
    fit_tiny(model, [curriculum], batches=1, epochs=6)
    assert [b["x"].shape[1] for b in model.seen] == [2, 2, 4, 4, 8, 8]
    model = SeenBatches(hidden=8)
    fit_tiny(model, [ChunkCurriculum(start_len=16)], batches=1)
    assert model.seen[0]["x"].shape == (3, 10, 88)  # longer than the batch: whole sequences
    with pytest.raises(ValueError, match="before ScheduledSampling"):
        fit_tiny(SeenBatches(hidden=8), [ScheduledSampling("linear", k=0.0, c=1.0), ChunkCurriculum()])
