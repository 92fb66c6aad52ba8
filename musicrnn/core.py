"""The recurrent core shared by every model: ``u_t = F(u_{t-1}, x_t)`` over piano-roll frames.

Cells: tanh, relu (rectifier) and sigmoid units, LSTM and GRU. Leaky integration (Bengio,
Boulanger-Lewandowski & Pascanu 2013): ``u_t = alpha * u_{t-1} + (1 - alpha) * F(u_{t-1}, x_t)`` with a
per-unit ``alpha``, either a fixed spread of time constants or learned. tanh/relu/LSTM/GRU without
leak run on PyTorch's fused ``nn.RNN``/``nn.LSTM``/``nn.GRU``; sigmoid units and leaky integration need
the step-by-step loop, with the input projection of all frames computed at once beforehand.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from musicrnn.errors import MusicrnnError
from musicrnn.pianoroll import NUM_PITCHES

CELLS = ("tanh", "relu", "sigmoid", "lstm", "gru")


def detach_state(state):
    """Cut the graph behind a carried state (truncated BPTT); works for tensors and LSTM tuples."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class RecurrentCore(nn.Module):
    """Reads frames ``x (batch, time, input)`` and returns ``cond (batch, time, hidden)`` where
    ``cond[:, t]`` summarises frames ``< t`` only (``cond[:, 0]`` is the initial state), so it can
    condition the distribution of frame ``t``.

    Args:
        input_size: frame width (88 pitches).
        hidden: recurrent units.
        cell: tanh, relu, sigmoid, lstm or gru.
        leaky: none, fixed (time constants spread geometrically from 1 to ``max_timescale`` frames)
            or learned (the same spread as the starting point).
        max_timescale: longest time constant of the leaky units, in frames.
        init: default (PyTorch's), orthogonal, or identity (recurrent matrix ``identity_scale * I``,
            the usual choice with rectifiers).
        identity_scale: scale of the identity initialisation.
        learn_init: learn the initial state ``u_0`` (else it is zero).
        dropout: dropout on the core's outputs.
    """

    def __init__(self, input_size: int = NUM_PITCHES, hidden: int = 300, cell: str = "tanh", leaky: str = "none",
                 max_timescale: float = 100.0, init: str = "default", identity_scale: float = 1.0,
                 learn_init: bool = True, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise MusicrnnError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        if leaky not in ("none", "fixed", "learned"):
            raise MusicrnnError(f"unknown leaky {leaky!r}; choose none, fixed or learned")
        if leaky != "none" and cell in ("lstm", "gru"):
            raise MusicrnnError("leaky integration applies to tanh, relu and sigmoid cells, not gated ones")
        if max_timescale < 1:
            raise MusicrnnError(f"max_timescale is in frames and must be >= 1, got {max_timescale}")
        if init not in ("default", "orthogonal", "identity"):
            raise MusicrnnError(f"unknown init {init!r}; choose default, orthogonal or identity")
        self.cell, self.hidden = cell, hidden
        self.fused = leaky == "none" and cell != "sigmoid"
        if cell == "lstm":
            self.rnn = nn.LSTM(input_size, hidden, batch_first=True)
        elif cell == "gru":
            self.rnn = nn.GRU(input_size, hidden, batch_first=True)
        else:  # sigmoid shares nn.RNN's parameters and is run by the loop
            self.rnn = nn.RNN(input_size, hidden, nonlinearity="relu" if cell == "relu" else "tanh",
                              batch_first=True)
        if leaky != "none":
            # alpha_i = 1 - 1/tau_i with tau_i from 1 (no leak) to max_timescale frames.
            tau = torch.logspace(0, math.log10(max_timescale), hidden)
            alpha = (1 - 1 / tau).clamp(1e-4, 1 - 1e-4)
            logit = torch.log(alpha) - torch.log1p(-alpha)  # alpha = sigmoid(alpha_logit), (hidden,)
            if leaky == "learned":
                self.alpha_logit = nn.Parameter(logit)
            else:  # a buffer, not a frozen parameter: optimizers and weight decay never see it
                self.register_buffer("alpha_logit", logit)
        else:
            self.alpha_logit = None
        gates = 4 if cell == "lstm" else 3 if cell == "gru" else 1
        w_hh = self.rnn.weight_hh_l0.data
        for g in range(gates):
            block = w_hh[g * hidden:(g + 1) * hidden]
            if init == "orthogonal":
                nn.init.orthogonal_(block)
            elif init == "identity":
                block.copy_(identity_scale * torch.eye(hidden))
        n_state = 2 if cell == "lstm" else 1
        self.init_state = nn.Parameter(torch.zeros(n_state, hidden), requires_grad=learn_init)
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch: int):
        """The learned ``u_0`` for a batch: ``(1, batch, hidden)``, a pair of them for the LSTM."""
        s = self.init_state[:, None, None, :].expand(-1, 1, batch, -1)
        return (s[0].contiguous(), s[1].contiguous()) if self.cell == "lstm" else s[0].contiguous()

    def forward(self, x: torch.Tensor, state=None):
        """``x (batch, time, input)`` -> ``(cond (batch, time, hidden), state after the last frame)``."""
        if state is None:
            state = self.initial_state(x.shape[0])
        h0 = state[0] if self.cell == "lstm" else state  # (1, batch, hidden)
        if self.fused:
            out, last = self.rnn(x, state)
        else:
            out, last = self._loop(x, h0)
        cond = torch.cat([h0.transpose(0, 1), out[:, :-1]], dim=1)  # shift: frame t sees u_{t-1}
        return self.dropout(cond), last

    def _loop(self, x: torch.Tensor, h0: torch.Tensor):
        r = self.rnn
        f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[self.cell]
        xw = torch.nn.functional.linear(x, r.weight_ih_l0, r.bias_ih_l0 + r.bias_hh_l0)  # (batch, time, hidden)
        alpha = torch.sigmoid(self.alpha_logit) if self.alpha_logit is not None else None
        h, outs = h0[0], []
        for t in range(x.shape[1]):
            new = f(xw[:, t] + h @ r.weight_hh_l0.T)
            h = new if alpha is None else alpha * h + (1 - alpha) * new
            outs.append(h)
        return torch.stack(outs, dim=1), h[None]
