import lightning as L
import pytest
import torch
from conftest import tiny_batch

from musicrnn.gradient_sampling import GradientNormSampling, long_term_scores, select_by_score
from musicrnn.models import RNN


def early_gradients_by_copies(model, x, mask, early_steps):
    """Per sequence, the gradient terms of ``W_hh`` at each early step, by brute force: the recurrent
    matrix is a separate leaf at every step, so autograd gives each step's term on its own."""
    core, n = model.core, len(x)
    r = core.rnn
    w_steps = [r.weight_hh_l0.detach().clone().requires_grad_() for _ in range(x.shape[1])]
    u, states = core.initial_state(n)[0], []
    for t in range(x.shape[1]):
        states.append(u)
        u = torch.tanh(x[:, t] @ r.weight_ih_l0.T + r.bias_ih_l0 + r.bias_hh_l0 + u @ w_steps[t].T)
    logp, _ = model.log_prob(torch.stack(states, 1), x)  # (batch, time)
    mean_len = mask.sum() / n
    per_sequence = []
    for i in range(n):
        e_i = -(logp[i] * mask[i]).sum() / mean_len
        per_sequence.append(torch.autograd.grad(e_i, w_steps[:early_steps], retain_graph=True))
    return per_sequence  # [sequence][step] -> (hidden, hidden)


def test_scores_are_the_norms_of_the_early_gradient_terms():
    torch.manual_seed(0)
    model = RNN(hidden=5, cell="tanh")
    with torch.no_grad():
        model.core.init_state.normal_()  # so that u_{-1} != 0 and step 0 counts
    batch = tiny_batch(batch=4, time=9)
    scores = long_term_scores(model, batch["x"], batch["mask"], early_steps=4)
    terms = early_gradients_by_copies(model, batch["x"], batch["mask"], early_steps=4)
    expected = torch.stack([sum(g.norm() for g in seq) for seq in terms])
    torch.testing.assert_close(scores, expected)
    # The score bounds the norm of the sequence's long-term gradient (triangle inequality), not tightly.
    norms = torch.stack([sum(seq).norm() for seq in terms])
    assert (norms <= scores + 1e-6).all() and (norms < 0.999 * scores).any()


def test_selection_rules_on_synthetic_scores():
    g = torch.Generator().manual_seed(0)
    low, high = 1.5, 2.0
    in_range_uniform, in_range_selected = 0, 0
    for _ in range(200):
        pool = torch.exp(torch.randn(32, generator=g))  # log-normal scores, pool of K * M = 4 * 8
        chosen = pool[select_by_score(pool, 8, "range", low, high, generator=g)]
        uniform = pool[torch.randperm(32, generator=g)[:8]]
        means = (pool.sort().values.unfold(0, 8, 1).mean(1))  # every window of the sorted pool
        feasible = ((means >= low) & (means <= high)).any()
        in_range_selected += bool(low <= chosen.mean() <= high) or not feasible
        in_range_uniform += bool(low <= uniform.mean() <= high)
        top = select_by_score(pool, 8, "top")
        assert set(pool[top].tolist()) == set(pool.sort().values[-8:].tolist())
    assert in_range_selected == 200 and in_range_uniform < 120
    # Proportional: a sequence is drawn (alone) with probability score / sum.
    pool = torch.tensor([1.0, 2.0, 3.0, 4.0])
    counts = torch.bincount(torch.stack([select_by_score(pool, 1, "proportional", generator=g)[0]
                                         for _ in range(8000)]), minlength=4)
    torch.testing.assert_close(counts / 8000, pool / pool.sum(), rtol=0, atol=0.02)


class Seen(L.Callback):
    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append({k: v.clone() for k, v in batch.items()})


def test_sampler_batches_keep_the_mean_score_in_range(fit_tiny):
    # A synthetic set: pools of 8 tiny sequences, some silent (small scores) and some dense.
    torch.manual_seed(0)
    model = RNN(hidden=8, lr=0.0)  # frozen: the scores seen at fit time are the ones computed here
    pools = [tiny_batch(batch=8, time=10, seed=s) for s in range(3)]
    all_scores = torch.cat([long_term_scores(model, p["x"], p["mask"], 3) for p in pools])
    low, high = float(all_scores.quantile(0.55)), float(all_scores.quantile(0.8))
    seen = Seen()
    sampler = GradientNormSampling(pool_factor=4, early_steps=3, rule="range", low=low, high=high)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[sampler, seen])
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(pools, batch_size=None))
    for batch in seen.batches:
        assert len(batch["x"]) == 2
        score = long_term_scores(model, batch["x"], batch["mask"], 3) * batch["mask"].sum() / 2 / \
            (pools[0]["mask"].sum() / 8)  # back to the pool's mean length
        assert low - 1e-6 <= float(score.mean()) <= high + 1e-6
    with pytest.raises(ValueError, match="tanh, relu or sigmoid"):
        fit_tiny(RNN(hidden=4, cell="gru"), [GradientNormSampling()])


def test_sampler_state_resumes_its_draws():
    scores = torch.arange(1.0, 33.0)
    a = GradientNormSampling(rule="proportional", seed=3)
    select_by_score(scores, 8, "proportional", generator=a.generator)  # a few draws in
    b = GradientNormSampling(rule="proportional", seed=99)
    b.load_state_dict(a.state_dict())
    draws = [select_by_score(scores, 8, "proportional", generator=s.generator) for s in (a, b)]
    assert torch.equal(*draws)
