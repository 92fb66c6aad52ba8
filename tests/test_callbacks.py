from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import tiny_batch
from lightning.pytorch.loggers import CSVLogger

from musicrnn.callbacks import GradientClipping, HiddenGradientPlot, NesterovMomentum, momentum_schedule
from musicrnn.models import RNN
from musicrnn.optim import SimplifiedNesterov


class Recorder(L.Callback):
    """Copies the gradients and the optimizer's settings at each step, where it sits in the callback list."""

    def __init__(self):
        self.grads, self.momentum, self.lr = [], [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append(torch.cat([p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]))
        self.momentum.append(optimizer.param_groups[0].get("momentum"))
        self.lr.append(optimizer.param_groups[0]["lr"])


def frozen_rnn(tbptt_steps):
    # lr = 0: the parameters never move, so every run sees the same gradients step for step.
    torch.manual_seed(0)
    return RNN(hidden=8, lr=0.0, tbptt_steps=tbptt_steps)


@pytest.mark.parametrize("tbptt_steps", [None, 3])  # automatic, then manual optimisation
def test_norm_clipping_rescales_whole_gradient_and_logs(fit_tiny, tbptt_steps):
    probe = Recorder()
    fit_tiny(frozen_rnn(tbptt_steps), [probe, GradientClipping(float("inf"))], batches=2)
    norms = torch.stack([g.norm() for g in probe.grads])
    assert len(norms) == (2 if tbptt_steps is None else 8)
    threshold = float(norms.min() + norms.max()) / 2  # some steps clipped, some not
    before, after = Recorder(), Recorder()
    trainer = fit_tiny(frozen_rnn(tbptt_steps), [before, GradientClipping(threshold), after], batches=2)
    clipped = 0
    for g, h in zip(before.grads, after.grads):
        if g.norm() >= threshold:
            clipped += 1
            torch.testing.assert_close(h, g * threshold / g.norm())
        else:
            torch.testing.assert_close(h, g, rtol=0, atol=0)
    assert 0 < clipped < len(norms)
    metrics = trainer.callback_metrics
    assert float(metrics["train/clip_fraction"]) == pytest.approx(clipped / len(norms))
    assert float(metrics["train/grad_norm"]) == pytest.approx(float(before.grads[-1].norm()), rel=1e-5)


def test_value_clipping_clamps_each_element(fit_tiny):
    before, after = Recorder(), Recorder()
    fit_tiny(frozen_rnn(None), [before, GradientClipping(0.01, mode="value"), after])
    g, h = before.grads[0], after.grads[0]
    assert g.abs().max() > 0.01
    torch.testing.assert_close(h, g.clamp(-0.01, 0.01), rtol=0, atol=0)


def test_momentum_schedules():
    assert [momentum_schedule(t, "sutskever", 0.99, 0, 1) for t in (0, 249, 250, 500, 750)] == \
        pytest.approx([0.5, 0.5, 0.75, 1 - 1 / 6, 0.875])
    assert momentum_schedule(10 ** 6, "sutskever", 0.95, 0, 1) == 0.95
    assert [momentum_schedule(t, "linear", 0.9, 0.5, 4) for t in (0, 2, 4, 8)] == pytest.approx([0.5, 0.7, 0.9, 0.9])
    assert momentum_schedule(123, "constant", 0.9, 0.5, 4) == 0.9


class NesterovRNN(RNN):
    def configure_optimizers(self):
        return SimplifiedNesterov(self.parameters(), lr=0.01, momentum=0.0)


def test_momentum_is_set_before_each_step_under_tbptt(fit_tiny):
    torch.manual_seed(0)
    probe = Recorder()
    trainer = fit_tiny(NesterovRNN(hidden=8, tbptt_steps=4),
                       [NesterovMomentum("linear", mu_max=0.8, mu_start=0.2, ramp_steps=3), probe], batches=2)
    assert trainer.global_step == len(probe.momentum) == 6
    assert probe.momentum == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert float(trainer.callback_metrics["train/momentum"]) == pytest.approx(0.8)


def test_lr_halves_when_validation_nll_rises():
    opt = SimplifiedNesterov([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    trainer = SimpleNamespace(sanity_checking=False, optimizers=[opt], callback_metrics={})
    callback, lrs = NesterovMomentum(lr_decay=0.5), []
    for nll in (5.0, 4.0, 4.5, 4.6, 4.0, 4.1):
        trainer.callback_metrics["val/nll"] = torch.tensor(nll)
        callback.on_validation_end(trainer, None)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.25, 0.25, 0.125]


def test_hidden_gradients_are_total_derivatives():
    # Batch of one: dL/du_0 is exactly the gradient of the learned initial state.
    torch.manual_seed(0)
    model = RNN(hidden=8, cell="tanh", leaky="fixed")
    batch = tiny_batch(batch=1)
    x, mask = batch["x"], batch["mask"]
    curves = HiddenGradientPlot().hidden_gradients(model, x, mask)
    cond, _ = model.core(x)
    model.loss(cond, x, mask)[0].backward()
    assert curves["L"][0] == pytest.approx(float(model.core.init_state.grad.norm()), rel=1e-5)
    assert curves["L"].shape == (10,) and curves["L_T"].shape == (7,)  # a lone sequence of 7 frames: T = 6
    assert curves["L_T"][0] > 0 and model.training


def test_plot_is_written_to_the_log_dir(fit_tiny, tmp_path):
    torch.manual_seed(0)
    trainer = fit_tiny(RNN(hidden=8), [HiddenGradientPlot(every_n_epochs=2)], epochs=2,
                       logger=CSVLogger(tmp_path, name="run", version=""))
    assert sorted(p.name for p in (tmp_path / "run").glob("*.png")) == ["hidden_grad_epoch1.png"]
    assert trainer.log_dir.rstrip("/") == str(tmp_path / "run")
