import lightning as L
import pytest
import torch
from conftest import tiny_batch

from musicrnn.callbacks import GradientClipping
from musicrnn.models import RNN
from musicrnn.regularizers import (PascanuRegularizer, RecurrentPenalty, batch_omega, pascanu_omega,
                                   spectral_radius, unrolled)


class GradProbe(L.Callback):
    """Copies every parameter's gradient at each step, where it sits in the callback list."""

    def __init__(self):
        self.grads = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append({n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None})


def frozen_rnn(**kwargs):
    torch.manual_seed(0)
    return RNN(hidden=6, lr=0.0, **kwargs)  # lr = 0: every step sees the same parameters


@pytest.mark.parametrize("n", [2, 7, 20])
def test_spectral_radius_against_eigenvalues(n):
    torch.manual_seed(n)
    for w in (torch.randn(n, n, dtype=torch.float64) / n ** 0.5 * 1.7,  # non-normal, complex pairs
              torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))[0] * 0.3,  # orthogonal: |lambda| all equal
              0.5 * torch.eye(n, dtype=torch.float64)):  # repeated eigenvalue (identity init)
        exact = torch.linalg.eigvals(w).abs().max()
        w = w.clone().requires_grad_()
        rho = spectral_radius(w)
        assert float(rho.detach()) == pytest.approx(float(exact), rel=0.05)
        rho.backward()
        assert torch.isfinite(w.grad).all()


def test_spectral_radius_gradient_is_the_eigenvalue_derivative():
    # For a simple real dominant eigenvalue, d rho / dW = y x^T / (y^T x) (left and right eigenvectors).
    torch.manual_seed(0)
    w = torch.randn(5, 5, dtype=torch.float64) * 0.3
    w[0, 0] = 2.0  # a clear real dominant eigenvalue near 2
    vals, right = torch.linalg.eig(w)
    i = vals.abs().argmax()
    assert abs(vals[i].imag) < 1e-12
    valsT, left = torch.linalg.eig(w.T)
    j = (valsT - vals[i]).abs().argmin()
    x, y = right[:, i].real, left[:, j].real
    expected = torch.outer(y, x) / (y @ x) * torch.sign(vals[i].real)
    w.requires_grad_()
    spectral_radius(w, squarings=8).backward()
    torch.testing.assert_close(w.grad, expected, rtol=0, atol=2e-2)


def test_recurrent_penalty_adds_its_gradient_before_clipping(fit_tiny):
    before, after = GradProbe(), GradProbe()
    model = frozen_rnn()
    fit_tiny(model, [before, RecurrentPenalty(l2=0.1, radius=2.0, target=1.0), after])
    w = model.core.rnn.weight_hh_l0.detach().clone().requires_grad_()
    penalty = 0.1 * w.square().sum() + 2.0 * (spectral_radius(w) - 1.0) ** 2
    expected, = torch.autograd.grad(penalty, w)
    name = "core.rnn.weight_hh_l0"
    torch.testing.assert_close(after.grads[0][name] - before.grads[0][name], expected)
    for n in before.grads[0]:  # nothing else changes
        if n != name:
            torch.testing.assert_close(after.grads[0][n], before.grads[0][n], rtol=0, atol=0)
    with pytest.raises(ValueError, match="before GradientClipping"):
        fit_tiny(frozen_rnn(), [GradientClipping(1.0), RecurrentPenalty(l2=0.1)])
    with pytest.raises(ValueError):
        RecurrentPenalty()


# ---- Pascanu's Omega

def omega_by_jacobians(w_hh, a, g, f):
    """Omega from the full Jacobian of each step map ``a_k -> W_hh f(a_k)``, one (sequence, k) at a time."""
    terms = []
    for b in range(a.shape[0]):
        for k in range(a.shape[1] - 1):
            if g[b, k + 1].norm() > 1e-12:
                jac = torch.autograd.functional.jacobian(lambda v: w_hh @ f(v), a[b, k])  # (hidden, hidden)
                terms.append(((g[b, k + 1] @ jac).norm() / g[b, k + 1].norm() - 1) ** 2)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("cell,f", [("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("relu", torch.relu)])
def test_pascanu_omega_and_its_gradient(cell, f):
    torch.manual_seed(0)
    w = (torch.randn(4, 4, dtype=torch.float64) * 0.8).requires_grad_()
    a, g = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 5, 4, dtype=torch.float64)
    g[1, 3:] = 0  # past the second sequence's end: left out
    omega = pascanu_omega(w, a, g, cell)
    torch.testing.assert_close(omega, omega_by_jacobians(w.detach(), a, g, f))
    grad, = torch.autograd.grad(omega, w)
    eps, fd = 1e-6, torch.zeros_like(w)
    for i in range(4):
        for j in range(4):
            step = torch.zeros_like(w)
            step[i, j] = eps
            up, down = pascanu_omega(w.detach() + step, a, g, cell), pascanu_omega(w.detach() - step, a, g, cell)
            fd[i, j] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-8)


def test_unrolled_core_equals_the_core():
    torch.manual_seed(0)
    model = RNN(hidden=6, cell="tanh", learn_init=True)
    with torch.no_grad():
        model.core.init_state.normal_()
    x = tiny_batch()["x"]
    cond, pre = unrolled(model.core, x)
    torch.testing.assert_close(cond, model.core(x)[0])
    torch.testing.assert_close(torch.tanh(pre[3]), cond[:, 4])


def test_pascanu_regularizer_adds_decayed_omega_gradient(fit_tiny):
    before, after = GradProbe(), GradProbe()
    model = frozen_rnn()
    reg = PascanuRegularizer(weight=0.5, decay_steps=1)
    fit_tiny(model, [before, reg, after], batches=2)
    name = "core.rnn.weight_hh_l0"
    for step, seed in enumerate((0, 1)):
        batch = tiny_batch(seed=seed)
        with torch.enable_grad():
            omega = batch_omega(model, batch["x"], batch["mask"])
        expected, = torch.autograd.grad(omega, model.core.rnn.weight_hh_l0)
        weight = 0.5 / (1 + step)  # 1/t decay with decay_steps = 1
        torch.testing.assert_close(after.grads[step][name] - before.grads[step][name], weight * expected)
    with pytest.raises(ValueError, match="tbptt"):
        fit_tiny(frozen_rnn(tbptt_steps=3), [PascanuRegularizer()])
    with pytest.raises(ValueError, match="tanh, relu or sigmoid"):
        fit_tiny(RNN(hidden=4, cell="lstm"), [PascanuRegularizer()])
