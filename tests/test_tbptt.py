import lightning as L
import pytest
import torch
from conftest import tiny_batch

from musicrnn.core import detach_state
from musicrnn.models import RNN


class GradientRecorder(L.Callback):
    def __init__(self):
        self.grads = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append({n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None})


def frozen(tbptt_steps, cell="tanh"):
    # lr = 0: parameters stay put, so each chunk's gradient can be recomputed by hand afterwards.
    torch.manual_seed(0)
    return RNN(hidden=8, cell=cell, lr=0.0, tbptt_steps=tbptt_steps)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_tbptt_over_the_whole_sequence_is_plain_backprop(fit_tiny, cell):
    plain, whole = GradientRecorder(), GradientRecorder()
    t_plain = fit_tiny(frozen(None, cell), [plain])
    t_whole = fit_tiny(frozen(10, cell), [whole])  # tiny batches have 10 frames
    assert len(plain.grads) == len(whole.grads) == 1
    for name, g in plain.grads[0].items():
        torch.testing.assert_close(whole.grads[0][name], g, msg=name)
    for key in ("train/nll", "train/loss"):
        assert float(t_whole.callback_metrics[key]) == pytest.approx(float(t_plain.callback_metrics[key]))


@pytest.mark.parametrize("cell", ["sigmoid", "gru", "lstm"])
def test_tbptt_carries_the_state_across_chunks(fit_tiny, cell):
    recorder = GradientRecorder()
    model = frozen(4, cell)
    trainer = fit_tiny(model, [recorder])
    assert trainer.global_step == len(recorder.grads) == 3  # chunks of 4, 4 and 2 frames

    batch = tiny_batch()
    x, mask = batch["x"], batch["mask"]
    state = None
    for i, (xc, mc) in enumerate(zip(x.split(4, 1), mask.split(4, 1))):
        model.zero_grad()
        cond, state = model.core(xc, state)  # the state carried from the previous chunk, detached
        model.loss(cond, xc, mc)[0].backward()
        state = detach_state(state)
        for name, p in model.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(recorder.grads[i][name], p.grad, msg=f"chunk {i}: {name}")
    # The final state is the untruncated run's, and train/nll is the exact whole-sequence value.
    with torch.no_grad():
        full_cond, full_state = model.core(x)
    for a, b in zip(state if cell == "lstm" else (state,), full_state if cell == "lstm" else (full_state,)):
        torch.testing.assert_close(a, b)
    logp, _ = model.log_prob(full_cond, x)
    assert float(trainer.callback_metrics["train/nll"]) == pytest.approx(float(-logp[mask].mean()), rel=1e-6)


def test_tbptt_steps_must_be_positive():
    with pytest.raises(ValueError):
        RNN(hidden=4, tbptt_steps=0)
