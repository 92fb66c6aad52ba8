"""AIS estimates of RBM partition functions against exact enumeration and a long reference run."""

import math

import pytest
import torch
import torch.nn.functional as F

from musicrnn.ais import Uniform, _ratio_step_limit, ais_log_z, exact_log_z, fit_base, linear


def rbms(n, D, H, scale, seed):
    """``n`` RBMs sharing ``W``, with sharp multi-modal weights like a trained RNN-RBM's."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, H, generator=g) * scale
    return torch.randn(n, D, generator=g) - 2, torch.randn(n, H, generator=g) - 1, W


def test_ais_agrees_with_exact_log_z():
    # H = 12 hidden units: log Z is exact by enumerating 2^12 hidden states.
    b_v, b_h, W = rbms(6, 88, 12, 0.5, seed=5)
    exact = exact_log_z(b_v.double(), b_h.double(), W.double())
    torch.manual_seed(0)
    est, var = ais_log_z(b_v, b_h, W)  # the defaults that evaluate uses
    err = est.double() - exact
    assert err.abs().max() < 0.05, err
    assert (err.abs() < 4 * var.sqrt() + 0.01).all(), (err, var.sqrt())  # the reported error is honest
    assert (var > 0).all()


def test_ais_agrees_with_exact_log_z_when_visible_layer_is_enumerated():
    # D = 10 visible, H = 40 hidden: enumerate the visible layer; hidden-layer chains must still be right.
    b_v, b_h, W = rbms(6, 10, 40, 0.8, seed=6)
    exact = exact_log_z(b_v.double(), b_h.double(), W.double())
    torch.manual_seed(1)
    est, var = ais_log_z(b_v, b_h, W)
    assert (est.double() - exact).abs().max() < 0.05


def test_ais_agrees_with_a_long_reference_run_on_a_full_size_rbm():
    # 88 x 150, too big to enumerate: the default must agree with 10x the temperatures and 5x the runs.
    b_v, b_h, W = rbms(8, 88, 150, 0.6, seed=7)
    torch.manual_seed(2)
    ref, ref_var = ais_log_z(b_v, b_h, W, runs=100, steps=3000)
    torch.manual_seed(3)
    est, var = ais_log_z(b_v, b_h, W)
    diff = (est.double() - ref.double()).mean()
    assert diff.abs() < 0.05 + 3 * (var.mean() + ref_var.mean()).sqrt(), diff


def test_a_factorial_rbm_needs_no_annealing():
    # W = 0: the base fits the RBM exactly, so every log-weight is 0 and log Z is exact with any budget.
    b_v, b_h = torch.randn(5, 88), torch.randn(5, 30)
    W = torch.zeros(88, 30)
    b0, c0 = fit_base(b_v, b_h, W, chains=64, steps=40)
    assert torch.allclose(torch.sigmoid(b0), torch.sigmoid(b_v), atol=0.02)
    assert torch.allclose(torch.sigmoid(c0), torch.sigmoid(b_h), atol=0.02)
    est, var = ais_log_z(b_v, b_h, W, runs=4, steps=5)
    exact = F.softplus(b_v).sum(-1) + F.softplus(b_h).sum(-1)
    assert torch.allclose(est, exact, atol=1e-3)
    assert var.max() < 1e-10


def test_large_weights_take_the_softplus_form_and_stay_exact():
    # Visible inputs that can pass +-80 (weights of scale 20): the sigmoid-ratio form would underflow in
    # float32, so ais_log_z must take the softplus form, and still agree with enumeration.
    b_v, b_h, W = rbms(4, 8, 6, 20.0, seed=8)
    assert _ratio_step_limit(b_v, b_v, W) == 0
    small_v, _, small_W = rbms(4, 8, 6, 0.5, seed=8)
    assert _ratio_step_limit(small_v, small_v, small_W) > 300 ** -0.5  # the others take ratios at every step
    exact = exact_log_z(b_v.double(), b_h.double(), W.double())
    torch.manual_seed(4)
    # Strong couplings need many temperatures near beta = 0, where the square-root schedule has few: 1,000
    # missed by up to 0.09 over seeds 4-7, 4,000 by at most 0.037.
    est, var = ais_log_z(b_v, b_h, W, runs=100, steps=4000)
    assert torch.isfinite(est).all()
    assert (est.double() - exact).abs().max() < 0.05, est.double() - exact


def test_linear_equals_the_float64_product():
    # oneDNN's product (at least ONEDNN_ROWS_PER_THREAD rows a thread, float32, no autograd) and the matmul /
    # addmm fallbacks.
    g = torch.Generator().manual_seed(9)
    w = torch.randn(150, 88, generator=g)
    for rows in (4, 3000):
        x = (torch.rand(2, rows, 88, generator=g) < 0.1).float()
        ref = x.double() @ w.double().T
        torch.testing.assert_close(linear(x, w).double(), ref, rtol=1e-5, atol=1e-5)
        assert linear(x, w).shape == (2, rows, 150)
        bias = torch.randn(rows, 150, generator=g)  # with a bias: 2-d (addmm below oneDNN's rows) and 3-d
        torch.testing.assert_close(linear(x[0], w, bias).double(), ref[0] + bias.double(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear(x, w, bias).double(), ref + bias.double(), rtol=1e-5, atol=1e-5)
    wg = w.clone().requires_grad_()
    linear(x, wg).sum().backward()  # with autograd: the differentiable fallback
    torch.testing.assert_close(wg.grad, x.sum((0, 1)).expand(150, 88), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("bits", [16, 24])
def test_uniform_draws_cover_their_grid_evenly(bits):
    """Every draw on its grid (16 bits: ``(k + 1/2) / 2^16``; 24 bits: ``k / 2^24``) inside ``[0, 1)``, and
    the top 16 bits' 65,536 values equally often (chi-square within 6 standard deviations)."""
    torch.manual_seed(0)
    u = Uniform(torch.zeros(1), bits=bits)((1 << 20,))
    assert u.dtype == torch.float32 and 0 <= u.min() and u.max() < 1 and (bits == 24 or u.min() > 0)
    k = u.double() * 2 ** bits - (0.5 if bits == 16 else 0.0)
    assert torch.equal(k, k.round())
    counts = torch.bincount((u.double() * 2 ** 16).long(), minlength=1 << 16).double()
    expected = len(u) / (1 << 16)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert abs(chi2 - (1 << 16)) < 6 * math.sqrt(2 * (1 << 16))
