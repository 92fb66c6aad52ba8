import pytest
import torch

from musicrnn.core import CELLS, RecurrentCore, detach_state


def frames(batch=3, time=9, width=88, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, time, width, generator=g) < 0.1).float()  # (batch, time, pitch)


@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru"])
def test_loop_equals_fused_rnn(cell):
    torch.manual_seed(0)
    core = RecurrentCore(88, 16, cell, init="orthogonal")
    assert core.fused
    x = frames()
    h0 = (torch.randn(1, 3, 16), torch.randn(1, 3, 16)) if cell == "lstm" else torch.randn(1, 3, 16)
    out_fused, last_fused = core.rnn(x, h0)
    out_loop, last_loop = core._loop(x, h0)
    torch.testing.assert_close(out_loop, out_fused, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last_loop, last_fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["tanh", "relu"])
def test_simple_rnn_backward_equals_nn_rnn(cell):
    # The CPU path (SimpleRNN's hand-written backward) against PyTorch's nn.RNN and its autograd, float64:
    # the states and the gradients of every parameter and of the initial state.
    torch.manual_seed(0)
    core = RecurrentCore(88, 16, cell, init="orthogonal").double()
    x, h0 = frames(batch=3, time=12).double(), torch.randn(1, 3, 16, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 12, 16, dtype=torch.float64)  # a loss that weighs every state differently
    out, last = core(x, h0)
    ref, ref_last = core.rnn(x, h0)
    torch.testing.assert_close(out[:, 1:], ref[:, :-1], rtol=0, atol=1e-12)  # cond[:, t] = u_{t-1}
    torch.testing.assert_close(last, ref_last, rtol=0, atol=1e-12)
    params = [h0, *core.rnn.parameters()]
    grads = torch.autograd.grad(((out[:, 1:] * weights[:, 1:]).sum() + last.sum()), params)
    ref_grads = torch.autograd.grad(((ref[:, :-1] * weights[:, 1:]).sum() + ref_last.sum()), params)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell,leaky", [(c, "none") for c in CELLS] + [("tanh", "fixed"), ("relu", "learned")])
def test_cond_at_t_depends_only_on_earlier_frames(cell, leaky):
    torch.manual_seed(0)
    core = RecurrentCore(88, 12, cell, leaky)
    x = frames()
    cond, _ = core(x)
    assert cond.shape == (3, 9, 12)
    torch.testing.assert_close(cond[:, 0], core.initial_state(3)[0] if cell != "lstm" else core.initial_state(3)[0][0])
    for t in (0, 4, 8):
        y = x.clone()
        y[:, t] = 1 - y[:, t]  # flip every pitch of frame t
        cond_y, _ = core(y)
        torch.testing.assert_close(cond_y[:, :t + 1], cond[:, :t + 1], rtol=0, atol=0)
        if t < 8:
            assert not torch.allclose(cond_y[:, t + 1], cond[:, t + 1])


def test_leaky_alpha_limits():
    torch.manual_seed(0)
    x = frames()
    core = RecurrentCore(88, 10, "tanh", "learned")
    plain = RecurrentCore(88, 10, "tanh")
    plain.load_state_dict({k: v for k, v in core.state_dict().items() if k != "alpha_logit"})
    with torch.no_grad():
        core.alpha_logit.fill_(-30.0)  # alpha -> 0: no leak, the plain (fused) tanh RNN
    torch.testing.assert_close(core(x)[0], plain(x)[0], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        core.alpha_logit.fill_(30.0)  # alpha -> 1: the state never moves from u_0
        core.init_state.normal_()
    cond, last = core(x)
    torch.testing.assert_close(cond, core.initial_state(3).transpose(0, 1).expand(-1, 9, -1))
    with torch.no_grad():
        core.alpha_logit.fill_(0.0)  # alpha = 1/2: u_1 = u_0 / 2 + F(u_0, x_0) / 2
    u0 = torch.randn(1, 3, 10)
    _, u1 = core(x[:, :1], u0)
    torch.testing.assert_close(u1, 0.5 * u0 + 0.5 * plain.rnn(x[:, :1], u0)[1])


def test_leaky_time_constants():
    fixed = RecurrentCore(88, 20, "tanh", "fixed", max_timescale=50.0)
    alpha = torch.sigmoid(fixed.alpha_logit)
    tau = 1 / (1 - alpha)  # time constant of each unit, in frames
    assert tau.min() == pytest.approx(1.0, abs=1e-3) and tau.max() == pytest.approx(50.0, rel=1e-3)
    assert torch.all(tau[1:] > tau[:-1])
    assert "alpha_logit" not in dict(fixed.named_parameters())  # fixed: never trained
    learned = RecurrentCore(88, 20, "tanh", "learned", max_timescale=50.0)
    learned(frames())[0].sum().backward()
    assert learned.alpha_logit.grad is not None and learned.alpha_logit.grad.abs().sum() > 0


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("init", ["default", "orthogonal", "identity"])
def test_every_cell_and_init_builds_runs_and_trains(cell, init):
    torch.manual_seed(0)
    core = RecurrentCore(88, 8, cell, init=init, identity_scale=0.5, dropout=0.1)
    gates = core.rnn.weight_hh_l0.shape[0] // 8
    block = core.rnn.weight_hh_l0[:8].detach()
    if init == "orthogonal":
        torch.testing.assert_close(block @ block.T, torch.eye(8), rtol=0, atol=1e-5)
    if init == "identity":
        torch.testing.assert_close(core.rnn.weight_hh_l0.detach(), 0.5 * torch.eye(8).repeat(gates, 1))
    cond, last = core(frames())
    assert cond.shape == (3, 9, 8) and torch.isfinite(cond).all()
    cond.sum().backward()
    assert core.rnn.weight_hh_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("cell", ["sigmoid", "lstm", "gru"])
def test_chunks_with_carried_state_equal_one_pass(cell):
    torch.manual_seed(0)
    core = RecurrentCore(88, 8, cell, "fixed" if cell == "sigmoid" else "none")
    x = frames(time=10)
    cond, last = core(x)
    state, parts = None, []
    for chunk in x.split(4, dim=1):
        c, state = core(chunk, state)
        parts.append(c)
        state = detach_state(state)
    # cond[:, 0] of each later chunk is the carried state: it matches the one pass exactly.
    torch.testing.assert_close(torch.cat(parts, 1), cond)
    for a, b in zip(state if cell == "lstm" else (state,), last if cell == "lstm" else (last,)):
        torch.testing.assert_close(a, b)
        assert not a.requires_grad


def test_rejects_unknown_options():
    for kwargs in ({"cell": "elman"}, {"leaky": "yes"}, {"init": "xavier"}, {"cell": "lstm", "leaky": "fixed"},
                   {"leaky": "fixed", "max_timescale": 0.5}, {"norm": "batch"}, {"variational_dropout": 1.0},
                   {"cell": "gru", "forget_bias": 1.0}):
        with pytest.raises(ValueError):
            RecurrentCore(88, 4, **kwargs)


def test_layer_norm_step_by_hand():
    torch.manual_seed(0)
    core = RecurrentCore(88, 6, "tanh", norm="layer")
    assert not core.fused
    with torch.no_grad():
        core.ln_gain.normal_()
        core.ln_bias.normal_()
    x, h0 = frames(), torch.randn(1, 3, 6)
    r = core.rnn
    a = x[:, 0] @ r.weight_ih_l0.T + r.bias_ih_l0 + h0[0] @ r.weight_hh_l0.T + r.bias_hh_l0  # (batch, hidden)
    mu, var = a.mean(-1, keepdim=True), a.var(-1, unbiased=False, keepdim=True)
    h1 = torch.tanh(core.ln_gain[0] * (a - mu) / torch.sqrt(var + 1e-5) + core.ln_bias[0])
    torch.testing.assert_close(core(x[:, :1], h0)[1][0], h1)


@pytest.mark.parametrize("cell", CELLS)
def test_layer_norm_is_invariant_to_the_scale_of_the_weights(cell):
    # Statistics per gate over its units: scaling every weight product (and bias) by 5 changes nothing;
    # without the normalisation it does.
    torch.manual_seed(0)
    x = frames()
    for norm, same in (("layer", True), ("none", False)):
        core = RecurrentCore(88, 8, cell, norm=norm)
        cond, _ = core(x)
        with torch.no_grad():
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(core.rnn, name).mul_(5.0)
        assert torch.allclose(core(x)[0], cond, atol=1e-4) == same


@pytest.mark.parametrize("cell", CELLS)
def test_weight_norm_starts_as_plain_and_ignores_row_scale(cell):
    torch.manual_seed(0)
    x = frames()
    core = RecurrentCore(88, 8, cell, norm="weight")
    plain = RecurrentCore(88, 8, cell)
    plain.load_state_dict({k: v for k, v in core.state_dict().items() if "gain" not in k})
    cond, _ = core(x)
    torch.testing.assert_close(cond, plain(x)[0], rtol=1e-5, atol=1e-6)  # g = ||V|| at the start
    with torch.no_grad():  # V's row lengths do not matter, only its directions
        core.rnn.weight_ih_l0.mul_(torch.rand(len(core.rnn.weight_ih_l0), 1) + 0.5)
        core.rnn.weight_hh_l0.mul_(torch.rand(len(core.rnn.weight_hh_l0), 1) + 0.5)
    torch.testing.assert_close(core(x)[0], cond, rtol=1e-5, atol=1e-6)
    core(x)[0].sum().backward()
    assert core.gain_hh.grad.abs().sum() > 0 and core.gain_ih.grad.abs().sum() > 0


def test_variational_dropout_masks_are_time_locked():
    torch.manual_seed(0)
    core = RecurrentCore(88, 32, "tanh", variational_dropout=0.5)
    assert not core.fused
    # Input mask: no recurrence and the same frame at every step, so every step gives the same state
    # if and only if the mask is the same at every step; sequences get different masks.
    with torch.no_grad():
        core.rnn.weight_hh_l0.zero_()
    x = frames(batch=4, time=1).expand(-1, 6, -1)
    out, _ = core._loop(x, core.initial_state(4))
    torch.testing.assert_close(out, out[:, :1].expand(-1, 6, -1))
    assert not torch.allclose(out[0], out[1])
    # Recurrent mask: state carried by the identity from u_0 = 1, no input: the units dropped at
    # the first step stay at 0 and no others join them.
    with torch.no_grad():
        core.rnn.weight_hh_l0.copy_(torch.eye(32))
        core.rnn.weight_ih_l0.zero_()
        core.rnn.bias_ih_l0.zero_()
        core.rnn.bias_hh_l0.zero_()
    out, _ = core._loop(torch.zeros(4, 6, 88), torch.ones(1, 4, 32))
    dead = out == 0  # (batch, time, hidden)
    assert dead[:, 0].any() and (dead == dead[:, :1]).all()
    core.eval()  # no dropout outside training
    out, _ = core._loop(torch.zeros(4, 6, 88), torch.ones(1, 4, 32))
    assert (out != 0).all()


def test_variational_dropout_masks_are_kept_across_truncated_bptt_chunks():
    torch.manual_seed(0)
    core = RecurrentCore(88, 16, "tanh", variational_dropout=0.5)
    x = frames(time=10)
    torch.manual_seed(1)
    cond, _ = core(x)
    torch.manual_seed(1)  # the same masks for the first chunk, then kept while the state is carried
    state, parts = None, []
    for chunk in x.split(4, dim=1):
        c, state = core(chunk, state)
        parts.append(c)
    torch.testing.assert_close(torch.cat(parts, 1), cond)
    torch.manual_seed(2)
    assert not torch.allclose(core(x)[0], cond)  # a new sequence: new masks


def test_lstm_forget_bias():
    core = RecurrentCore(88, 5, "lstm", forget_bias=1.0)
    r = core.rnn
    torch.testing.assert_close((r.bias_ih_l0 + r.bias_hh_l0)[5:10].detach(), torch.ones(5))
    assert not torch.allclose((r.bias_ih_l0 + r.bias_hh_l0)[:5].detach(), torch.ones(5))
