import pytest
import torch

from musicrnn.optim import SimplifiedNesterov


def test_iterates_are_classical_nesterov_look_ahead_points():
    # f(theta) = 1/2 theta' A theta - b' theta, ill-conditioned so momentum matters.
    torch.manual_seed(0)
    Q = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0]
    A = Q @ torch.diag(torch.tensor([0.01, 0.1, 1.0, 3.0, 10.0], dtype=torch.float64)) @ Q.T
    b = torch.randn(5, dtype=torch.float64)
    grad = lambda theta: A @ theta - b  # noqa: E731
    lr, steps = 0.05, 60
    mus = [min(1 - 2 ** (-1 - torch.log2(torch.tensor(t // 10 + 1.0)).item()), 0.95) for t in range(steps + 1)]

    # Classical Nesterov: v_t = mu_{t-1} v_{t-1} - lr grad f(theta_{t-1} + mu_{t-1} v_{t-1}); theta_t = theta_{t-1} + v_t.
    theta, v = torch.randn(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    Theta = torch.nn.Parameter(theta.clone())  # look-ahead point theta_0 + mu_0 * 0
    opt = SimplifiedNesterov([Theta], lr=lr, momentum=mus[0])
    for t in range(1, steps + 1):
        v = mus[t - 1] * v - lr * grad(theta + mus[t - 1] * v)
        theta = theta + v
        opt.param_groups[0]["momentum"] = mus[t]
        opt.zero_grad()
        Theta.grad = grad(Theta.detach())
        opt.step()
        torch.testing.assert_close(Theta.detach(), theta + mus[t] * v, rtol=1e-12, atol=1e-12)
    assert torch.linalg.vector_norm(grad(Theta.detach())) < 0.5 * torch.linalg.vector_norm(b)  # it moved


def test_zero_momentum_is_sgd():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SimplifiedNesterov([p], lr=0.1, momentum=0.0)
    for _ in range(3):
        p.grad = torch.tensor([0.5, 1.0])
        opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.0 - 0.15, -2.0 - 0.3]))


def test_rejects_bad_settings():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError):
        SimplifiedNesterov(p, lr=-1.0)
    with pytest.raises(ValueError):
        SimplifiedNesterov(p, momentum=1.0)
