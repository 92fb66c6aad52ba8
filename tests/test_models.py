"""The maths of the frame distributions, checked by brute force at tiny sizes."""

import csv
import importlib.util
import itertools
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import tiny_batch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from musicrnn.ais import exact_log_z
from musicrnn.models import RNN, RNNNADE
from musicrnn.models.nade import nade_log_prob
import musicrnn.models.rbm as rbm
from musicrnn.models.rbm import RNNRBM, CDCost, approximate_mode, free_energy, gibbs

ROOT = Path(__file__).resolve().parents[1]


def all_binary(d):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def assert_same_values_and_gradients(f, g, v, args, weights):
    """``f(v, *args)`` and ``g(v, *args)``: equal values, and equal gradients of ``sum(weights * logp)``."""
    results = []
    for fn in (f, g):
        leaves = [a.clone().requires_grad_() for a in args]
        logp = fn(v, *leaves)
        results.append([logp, *torch.autograd.grad((logp * weights).sum(), leaves)])
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected)


def test_nade_normalises_over_all_visible_vectors():
    torch.manual_seed(0)
    D, H = 10, 6
    W, V = torch.randn(H, D, dtype=torch.float64), torch.randn(D, H, dtype=torch.float64)
    b_v, b_h = torch.randn(D, dtype=torch.float64), torch.randn(H, dtype=torch.float64)
    v = all_binary(D)
    logp = nade_log_prob(v, b_v.expand(len(v), D), b_h.expand(len(v), H), W, V)
    assert torch.logsumexp(logp, 0).item() == pytest.approx(0.0, abs=1e-10)


def test_nade_vectorised_equals_pitch_loop():
    torch.manual_seed(1)
    n, D, H = 7, 9, 5
    v = torch.bernoulli(torch.full((n, D), 0.4, dtype=torch.float64))
    W, V = torch.randn(H, D, dtype=torch.float64), torch.randn(D, H, dtype=torch.float64)
    b_v, b_h = torch.randn(n, D, dtype=torch.float64), torch.randn(n, H, dtype=torch.float64)
    expected = torch.zeros(n, dtype=torch.float64)
    for f in range(n):
        a = b_h[f].clone()
        for i in range(D):
            p = torch.sigmoid(b_v[f, i] + V[i] @ torch.sigmoid(a))
            expected[f] += torch.log(p if v[f, i] else 1 - p)
            a = a + W[:, i] * v[f, i]
    torch.testing.assert_close(nade_log_prob(v, b_v, b_h, W, V), expected)


def test_nade_gradients_match_finite_differences():
    torch.manual_seed(2)
    n, D, H = 3, 6, 4
    v = torch.bernoulli(torch.full((n, D), 0.5, dtype=torch.float64))
    args = [torch.randn(n, D, dtype=torch.float64, requires_grad=True),
            torch.randn(n, H, dtype=torch.float64, requires_grad=True),
            torch.randn(H, D, dtype=torch.float64, requires_grad=True),
            torch.randn(D, H, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda *a: nade_log_prob(v, *a), args)


def nade_log_prob_loop(v, b_v, b_h, W, V):
    """The NADE written as plainly as possible, for autograd to differentiate."""
    out = []
    for f in range(len(v)):
        a, logp = b_h[f], 0.0
        for i in range(v.shape[1]):
            p = torch.sigmoid(b_v[f, i] + V[i] @ torch.sigmoid(a))
            logp = logp + torch.log(p if v[f, i] else 1 - p)
            a = a + W[:, i] * v[f, i]
        out.append(logp)
    return torch.stack(out)


def test_nade_gradients_match_autograd_through_a_plain_loop():
    torch.manual_seed(4)
    n, D, H = 6, 13, 5  # D not a multiple of the pitch block; an empty and a full frame
    v = torch.bernoulli(torch.full((n, D), 0.3, dtype=torch.float64))
    v[0], v[1] = 0, 1
    args = [torch.randn(n, D, dtype=torch.float64), torch.randn(n, H, dtype=torch.float64),
            torch.randn(H, D, dtype=torch.float64), torch.randn(D, H, dtype=torch.float64)]
    weights = torch.randn(n, dtype=torch.float64)
    assert_same_values_and_gradients(nade_log_prob, nade_log_prob_loop, v, args, weights)


def test_nade_backward_pass_after_another_forward_pass():
    """The backward pass reuses the forward pass's states from a scratch buffer unless a later call
    overwrote them: then it recomputes them."""
    torch.manual_seed(6)
    D, H = 9, 4
    calls = []
    for n in (5, 3):
        v = torch.bernoulli(torch.full((n, D), 0.3, dtype=torch.float64))
        args = [torch.randn(n, D, dtype=torch.float64), torch.randn(n, H, dtype=torch.float64),
                torch.randn(H, D, dtype=torch.float64), torch.randn(D, H, dtype=torch.float64)]
        leaves = [a.clone().requires_grad_() for a in args]
        calls.append((v, args, leaves, nade_log_prob(v, *leaves)))  # both forward passes first
    for v, args, leaves, logp in calls:
        plain = [a.clone().requires_grad_() for a in args]
        expected = torch.autograd.grad(nade_log_prob_loop(v, *plain).sum(), plain)
        for got, want in zip(torch.autograd.grad(logp.sum(), leaves), expected):
            torch.testing.assert_close(got, want)


def test_nade_trains_after_a_forward_pass_in_inference_mode():
    """Scratch buffers made under ``torch.inference_mode`` (Lightning's validation) are not reused outside."""
    torch.manual_seed(7)
    model = RNNNADE(hidden=12, nade_hidden=7)
    x = torch.bernoulli(torch.full((2, 9, 88), 0.1))
    with torch.inference_mode():
        model.log_prob(model.core(x)[0], x)
    logp, _ = model.log_prob(model.core(x)[0], x)
    (-logp.sum()).backward()
    assert model.W.grad.abs().sum() > 0


def test_nade_matches_the_kept_reference_on_a_real_size_batch():
    """Against ``benchmarks/nade_reference.py`` (the per-pitch loop it replaced) at JSB's sizes and
    sparsity (about 4 of 88 pitches on), with padding frames and one dense frame."""
    spec = importlib.util.spec_from_file_location("nade_reference", ROOT / "benchmarks" / "nade_reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    torch.manual_seed(5)
    n, D, H = 700, 88, 150
    v = torch.bernoulli(torch.full((n, D), 4 / 88, dtype=torch.float64))
    v[-50:], v[3] = 0, torch.bernoulli(torch.full((D,), 0.5, dtype=torch.float64))
    args = [torch.randn(n, D, dtype=torch.float64), torch.randn(n, H, dtype=torch.float64),
            0.3 * torch.randn(H, D, dtype=torch.float64), 0.3 * torch.randn(D, H, dtype=torch.float64)]
    weights = torch.rand(n, dtype=torch.float64)
    assert_same_values_and_gradients(nade_log_prob, reference.reference_nade_log_prob, v, args, weights)


def test_rnn_nade_gradient_reaches_the_recurrent_core():
    torch.manual_seed(3)
    model = RNNNADE(hidden=12, nade_hidden=7)
    x = torch.bernoulli(torch.full((3, 9, 88), 0.1))
    logp, _ = model.log_prob(model.core(x)[0], x)
    (-logp.sum()).backward()
    assert model.W.grad.abs().sum() > 0 and model.core.rnn.weight_hh_l0.grad.abs().sum() > 0


def brute_rbm_marginal(b_v, b_h, W):
    D, H = W.shape
    v, h = all_binary(D), all_binary(H)
    energy = -(v @ b_v)[:, None] - (h @ b_h)[None] - v @ W @ h.T  # (2^D, 2^H)
    return torch.logsumexp(-energy, 1), torch.logsumexp(-energy.flatten(), 0)


def test_free_energy_and_exact_log_z_match_brute_force():
    torch.manual_seed(4)
    D, H = 7, 5
    W = torch.randn(D, H, dtype=torch.float64)
    b_v, b_h = torch.randn(D, dtype=torch.float64), torch.randn(H, dtype=torch.float64)
    log_marginal, log_z = brute_rbm_marginal(b_v, b_h, W)
    v = all_binary(D)
    torch.testing.assert_close(-free_energy(v, b_v.expand(len(v), D), b_h.expand(len(v), H), W), log_marginal)
    assert exact_log_z(b_v[None], b_h[None], W).item() == pytest.approx(log_z.item())
    # enumerating the visible layer instead (D < H) gives the same number
    assert exact_log_z(b_h[None], b_v[None], W.T).item() == pytest.approx(log_z.item())


def test_approximate_mode_finds_the_most_likely_frame():
    torch.manual_seed(7)
    D, H, n = 10, 6, 20
    W = torch.randn(D, H) * 2
    b_v, b_h = torch.randn(n, D) - 1, torch.randn(n, H)
    v = all_binary(D).float()  # (2^D, D): the exact mode of each RBM by enumeration
    fe = torch.stack([free_energy(v, b_v[i].expand(len(v), D), b_h[i].expand(len(v), H), W) for i in range(n)])
    exact = v[fe.argmin(1)]
    found = approximate_mode(b_v, b_h, W)
    assert set(found.unique().tolist()) <= {0.0, 1.0}
    assert (found == exact).all(1).float().mean() >= 0.95


def test_cd_training_raises_a_tiny_rbms_likelihood():
    torch.manual_seed(0)  # over seeds 0-11 the end log-likelihood was -1.1 to -2.3 (optimum -0.69), from -4.2
    D, H = 6, 4
    data = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float32).repeat(32, 1)
    W = (0.01 * torch.randn(D, H)).requires_grad_()
    b_v, b_h = torch.zeros(D, requires_grad=True), torch.zeros(H, requires_grad=True)

    def avg_loglik():
        with torch.no_grad():
            lz = exact_log_z(b_v[None].double(), b_h[None].double(), W.double())
            return (-free_energy(data.double(), b_v.double(), b_h.double(), W.double()) - lz).mean().item()

    before = avg_loglik()
    opt = torch.optim.SGD([W, b_v, b_h], lr=0.1)
    for _ in range(300):
        with torch.no_grad():
            v_k = gibbs(data, b_v.expand_as(data), b_h.expand(len(data), H), W, steps=1)
        cost = (free_energy(data, b_v, b_h, W) - free_energy(v_k, b_v, b_h, W)).mean()
        opt.zero_grad()
        cost.backward()
        opt.step()
    after = avg_loglik()
    assert after > before + 1.5 and after > -math.log(2) - 1.5  # two patterns: optimum is -log 2


@pytest.mark.parametrize("draw_block", [rbm.DRAW_BLOCK, 1_000])  # all sweeps' numbers at once, or one sweep's
def test_gibbs_chains_reach_the_rbms_own_distribution(monkeypatch, draw_block):
    monkeypatch.setattr(rbm, "DRAW_BLOCK", draw_block)
    torch.manual_seed(0)
    D, H, chains = 4, 3, 20_000
    W, b_v, b_h = torch.randn(D, H), torch.randn(2, D), torch.randn(2, H)  # two RBMs sharing W
    states = ((torch.arange(2 ** D)[:, None] >> torch.arange(D)) & 1).float()  # (16, D)
    for i in range(2):
        p = torch.softmax(-free_energy(states, b_v[i].expand(16, D), b_h[i].expand(16, H), W), 0)
        v0 = torch.zeros(chains, D)  # every chain starts from the empty frame
        v = gibbs(v0, b_v[i].expand(chains, D), b_h[i].expand(chains, H), W, steps=30)
        seen = torch.bincount((v * 2 ** torch.arange(D)).sum(1).long(), minlength=2 ** D) / chains
        assert 0.5 * (seen - p).abs().sum() < 0.02  # total variation: 20,000 exact draws read 0.007-0.011


def test_cd_cost_and_its_written_out_gradient_match_autograd_through_the_free_energy():
    torch.manual_seed(0)
    n, D, H = 7, 5, 4
    v, v_k = (torch.rand(2, n, D) < 0.4).double()
    b_v, b_h, W = (torch.randn(*s, dtype=torch.double, requires_grad=True) for s in [(n, D), (n, H), (D, H)])
    cost = CDCost.apply(v, v_k, b_v, b_h, W)
    by_autograd = (free_energy(v, b_v, b_h, W) - free_energy(v_k, b_v, b_h, W)).mean()
    torch.testing.assert_close(cost, by_autograd)
    for mine, theirs in zip(torch.autograd.grad(1.7 * cost, [b_v, b_h, W]),
                            torch.autograd.grad(1.7 * by_autograd, [b_v, b_h, W])):
        torch.testing.assert_close(mine, theirs)
    assert torch.autograd.gradcheck(lambda *p: CDCost.apply(v, v_k, *p), (b_v, b_h, W))


@pytest.mark.parametrize("cls, kw", [(RNN, {}), (RNNNADE, {"nade_hidden": 8}), (RNNRBM, {"rbm_hidden": 8})])
def test_sampling_is_binary_reproducible_and_primed(cls, kw):
    torch.manual_seed(0)
    model = cls(hidden=16, **kw)
    prime = torch.bernoulli(torch.full((5, 88), 0.1))
    torch.manual_seed(7)
    a = model.sample(3, 6, prime=prime, temperature=0.8)
    torch.manual_seed(7)
    b = model.sample(3, 6, prime=prime, temperature=0.8)
    assert a.shape == (3, 11, 88)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[:, :5], prime.expand(3, -1, -1))
    torch.manual_seed(8)
    assert not torch.equal(model.sample(3, 6, prime=prime), a)


def test_conditioning_sees_only_the_past():
    torch.manual_seed(0)
    model = RNNNADE(hidden=16, nade_hidden=8)
    x = torch.bernoulli(torch.full((2, 10, 88), 0.2))
    logp, _ = model.log_prob(model.core(x)[0], x)
    y = x.clone()
    y[:, 6] = 1 - y[:, 6]  # change frame 6: frames 0..5 keep their likelihood, 7.. change
    logq, _ = model.log_prob(model.core(y)[0], y)
    torch.testing.assert_close(logp[:, :6], logq[:, :6])
    assert not torch.allclose(logp[:, 7:], logq[:, 7:])


def test_the_loggers_get_each_logged_steps_own_train_loss(fit_tiny, tmp_path):
    # train/loss is logged on the steps the loggers write (every 2nd here), not on every step: the CSV must
    # hold those steps' own losses, as when it was logged on every step.
    torch.manual_seed(0)
    model = RNN(hidden=8, lr=0.0)  # lr 0: each batch's loss can be recomputed afterwards
    logger = CSVLogger(tmp_path, name="run", version=0)
    fit_tiny(model, batches=6, logger=logger, log_every_n_steps=2)
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "version_0" / "metrics.csv")) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [1, 3, 5]
    with torch.no_grad():
        for r in rows:
            b = tiny_batch(seed=int(r["step"]))
            loss, _ = model.loss(model.core(b["x"])[0], b["x"], b["mask"])
            assert float(r["train/loss"]) == pytest.approx(float(loss), rel=1e-5)


def test_rnn_rbm_sanity_check_scores_each_sequences_first_frames_only():
    # Lightning's sanity check runs validation_step before training and discards what it logs: the RNN-RBM
    # runs the same code there on rbm.SANITY_FRAMES frames a sequence; the real validation scores every frame.
    torch.manual_seed(0)
    model = RNNRBM(hidden=8, rbm_hidden=6, cd_steps=1, val_ais_runs=2, val_ais_steps=5)
    seen = []  # (sanity check?, rows) of every evaluation pass through to_bv (AIS and mode finding)

    def record(module, inputs, output):
        if not module.training:
            seen.append((model.trainer.sanity_checking, inputs[0][..., 0].numel()))  # rows: frames scored
    model.to_bv.register_forward_hook(record)
    batch = tiny_batch(batch=3, time=20, seed=4)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1)
    trainer.fit(model, DataLoader([tiny_batch()], batch_size=None), DataLoader([batch], batch_size=None))
    sanity = {rows for check, rows in seen if check}
    real = {rows for check, rows in seen if not check}
    assert sanity == {3 * rbm.SANITY_FRAMES} and real == {3 * 20}, seen
