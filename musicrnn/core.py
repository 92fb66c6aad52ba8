"""The recurrent core shared by every model: ``u_t = F(u_{t-1}, x_t)`` over piano-roll frames.

Cells: tanh, relu (rectifier) and sigmoid units, LSTM and GRU. Leaky integration (Bengio,
Boulanger-Lewandowski & Pascanu 2013): ``u_t = alpha * u_{t-1} + (1 - alpha) * F(u_{t-1}, x_t)`` with a
per-unit ``alpha``, either a fixed spread of time constants or learned. Layer normalisation (Ba, Kiros &
Hinton 2016) or weight normalisation (Salimans & Kingma 2016) inside the cell, and variational dropout
(Gal & Ghahramani 2016). tanh/relu/LSTM/GRU without any of these run on PyTorch's fused
``nn.RNN``/``nn.LSTM``/``nn.GRU`` (tanh and relu on the CPU on ``SimpleRNN``, the same maths with a faster
backward pass); the rest need the step-by-step loop, with the input projection of all frames computed at
once beforehand.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from musicrnn.errors import MusicrnnError
from musicrnn.pianoroll import NUM_PITCHES

CELLS = ("tanh", "relu", "sigmoid", "lstm", "gru")
NORMS = ("none", "layer", "weight")


def detach_state(state):
    """Cut the graph behind a carried state (truncated BPTT); works for tensors and LSTM tuples."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class SimpleRNN(torch.autograd.Function):
    """``u_t = f(xw_t + W_hh u_{t-1})`` for tanh or relu ``f`` with a hand-written backward pass: what
    ``nn.RNN`` computes, for the CPU. ``xw (time, batch, hidden)`` is the input projection with both
    biases, time-major so that each step reads and writes contiguous rows.

    Why: ``nn.RNN`` on the CPU records every time step in autograd, and its backward pass runs one small
    weight-gradient product per step. Here the backward pass keeps one product per step (the state's
    gradient) and gets ``dL/dW_hh`` from a single product over all steps. Forward and backward of 100
    frames, one thread: 100 units, batch 1: 2.34 ms with ``nn.RNN``, 1.13 ms with this; batch 16: 7.6
    against 4.6 ms; 300 units, batch 16: 17.9 against 15.3 ms. On GPUs cuDNN's kernel stays. The loops
    step over views made by one ``unbind`` (indexing ``xw[t]`` costs ~1 us a step) and the backward pass
    folds the later steps' gradient in with one ``addcmul`` a step: 60 frames at batch 1, 0.68 -> 0.47 ms.
    """

    @staticmethod
    def forward(ctx, xw, h0, w_hh, relu: bool):
        # Each step adds its product to its own rows of a copy of xw in place: ``addmm(x_t, ..., out=out_t)``
        # first copies x_t into out_t, one call a step (60 frames at batch 1: 0.48 -> 0.43 ms with backward).
        out = xw.clone()  # (time, batch, hidden)
        h, w_t = h0, w_hh.T
        # unbind: every step's rows as views made in one call; indexing out[t] in the loop costs ~1 us a step
        for out_t in out.unbind(0):
            h = out_t.addmm_(h, w_t)
            h = h.relu_() if relu else h.tanh_()
        ctx.save_for_backward(out, h0, w_hh)
        ctx.relu = relu
        return out

    @staticmethod
    def backward(ctx, d_out):
        out, h0, w_hh = ctx.saved_tensors
        deriv = (out > 0).to(out.dtype) if ctx.relu else torch.mul(out, out).neg_().add_(1)  # f' as a function of u
        g = torch.mul(d_out, deriv)  # dL/d(pre-activation) (time, batch, hidden), so far from d_out alone
        dh = torch.zeros_like(h0)  # dL/du_t through the later steps, overwritten in place
        # g_t = (d_out_t + dh) f'_t: one addcmul a step on top of the product computed for all steps at once
        for g_t, f_t in zip(g.unbind(0)[::-1], deriv.unbind(0)[::-1]):
            torch.mm(g_t.addcmul_(dh, f_t), w_hh, out=dh)
        prev = torch.cat([h0[None], out[:-1]]).flatten(0, 1)  # u_{t-1} of every step, (time * batch, hidden)
        return g, dh, g.flatten(0, 1).T @ prev, None


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
        norm: none; layer: layer normalisation (Ba, Kiros & Hinton 2016) of each gate's pre-activation,
            statistics per frame over its ``hidden`` units, gain and bias shared over time, after the
            weight products and before the non-linearity (and of the LSTM's cell state before its
            tanh, as Ba et al. do); weight: weight normalisation (Salimans &
            Kingma 2016) of the input and recurrent matrices, ``W = g V / ||V||`` row by row.
        variational_dropout: variational (time-locked) dropout (Gal & Ghahramani 2016): one mask per
            sequence on the input frame and one on the recurrent state ``u_{t-1}`` where it enters the
            weight product, the same at every step, and kept from chunk to chunk under truncated BPTT.
        forget_bias: LSTM only: start the forget gate's bias at this value (1.0: Gers, Schmidhuber &
            Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015); None keeps PyTorch's initialisation.
    """

    def __init__(self, input_size: int = NUM_PITCHES, hidden: int = 300, cell: str = "tanh", leaky: str = "none",
                 max_timescale: float = 100.0, init: str = "default", identity_scale: float = 1.0,
                 learn_init: bool = True, dropout: float = 0.0, norm: str = "none",
                 variational_dropout: float = 0.0, forget_bias: float | None = None):
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
        if norm not in NORMS:
            raise MusicrnnError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
        if not 0 <= variational_dropout < 1:
            raise MusicrnnError(f"variational_dropout must be in [0, 1), got {variational_dropout}")
        if forget_bias is not None and cell != "lstm":
            raise MusicrnnError(f"forget_bias applies to the lstm cell only, not {cell}")
        self.cell, self.hidden, self.norm, self.variational_dropout = cell, hidden, norm, variational_dropout
        self.fused = leaky == "none" and cell != "sigmoid" and norm == "none" and variational_dropout == 0
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
        if forget_bias is not None:  # PyTorch's LSTM gates are i, f, g, o; its two biases add up
            with torch.no_grad():
                self.rnn.bias_ih_l0[hidden:2 * hidden].fill_(forget_bias)
                self.rnn.bias_hh_l0[hidden:2 * hidden].zero_()
        if norm == "layer":  # per gate, and the LSTM's cell state: (gates (+ 1), hidden)
            rows = gates + (cell == "lstm")
            self.ln_gain = nn.Parameter(torch.ones(rows, hidden))
            self.ln_bias = nn.Parameter(torch.zeros(rows, hidden))
        if norm == "weight":  # g = ||V|| per row: the matrices start as initialised above
            self.gain_ih = nn.Parameter(self.rnn.weight_ih_l0.detach().norm(dim=1))
            self.gain_hh = nn.Parameter(self.rnn.weight_hh_l0.detach().norm(dim=1))
        self.masks = None  # variational dropout's (input, state) masks of the sequence being read
        n_state = 2 if cell == "lstm" else 1
        self.init_state = nn.Parameter(torch.zeros(n_state, hidden), requires_grad=learn_init)
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch: int):
        """The learned ``u_0`` for a batch: ``(1, batch, hidden)``, a pair of them for the LSTM."""
        s = self.init_state[:, None, None, :].expand(-1, 1, batch, -1)
        return (s[0].contiguous(), s[1].contiguous()) if self.cell == "lstm" else s[0].contiguous()

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The input and recurrent matrices in use, ``(gates * hidden, input)`` and ``(gates * hidden, hidden)``:
        the RNN's own, or ``g V / ||V||`` row by row under weight normalisation (differentiable in g, V)."""
        w_ih, w_hh = self.rnn.weight_ih_l0, self.rnn.weight_hh_l0
        if self.norm == "weight":
            w_ih = self.gain_ih[:, None] * w_ih / w_ih.norm(dim=1, keepdim=True)
            w_hh = self.gain_hh[:, None] * w_hh / w_hh.norm(dim=1, keepdim=True)
        return w_ih, w_hh

    def forward(self, x: torch.Tensor, state=None):
        """``x (batch, time, input)`` -> ``(cond (batch, time, hidden), state after the last frame)``."""
        new_sequence = state is None  # else a carried state: the same sequence goes on
        if state is None:
            state = self.initial_state(x.shape[0])
        h0 = state[0] if self.cell == "lstm" else state  # (1, batch, hidden)
        if self.fused and self.cell in ("tanh", "relu") and x.device.type == "cpu":
            r = self.rnn
            xw = nn.functional.linear(x.transpose(0, 1), r.weight_ih_l0, r.bias_ih_l0 + r.bias_hh_l0)
            out = SimpleRNN.apply(xw, h0[0], r.weight_hh_l0, self.cell == "relu")  # (time, batch, hidden)
            out, last = out.transpose(0, 1), out[-1:]
        elif self.fused:
            out, last = self.rnn(x, state)
        else:
            out, last = self._loop(x, state, new_sequence)
        cond = torch.cat([h0.transpose(0, 1), out[:, :-1]], dim=1)  # shift: frame t sees u_{t-1}
        return self.dropout(cond), last

    def _layer_norm(self, a: torch.Tensor, gates: slice) -> torch.Tensor:
        """Normalise each gate's pre-activation ``a (batch, k * hidden)`` over its units (no-op unless
        ``norm="layer"``); ``gates`` picks the k gates' gains and biases."""
        if self.norm != "layer":
            return a
        a = nn.functional.layer_norm(a.unflatten(-1, (-1, self.hidden)), (self.hidden,))  # (batch, k, hidden)
        return (a * self.ln_gain[gates] + self.ln_bias[gates]).flatten(-2)

    def _variational_masks(self, x: torch.Tensor, new_sequence: bool):
        """One dropout mask per sequence for the inputs ``(batch, 1, input)`` and the recurrent state
        ``(batch, hidden)``, kept for every step and, while a state is carried (truncated BPTT), for the
        sequence's later chunks; ``(None, None)`` outside training or when off."""
        p = self.variational_dropout
        if not (self.training and p):
            return None, None
        if new_sequence or self.masks is None or len(self.masks[1]) != len(x):
            keep = lambda *shape: torch.bernoulli(x.new_full(shape, 1 - p)) / (1 - p)  # noqa: E731
            self.masks = keep(x.shape[0], 1, x.shape[2]), keep(x.shape[0], self.hidden)
        return self.masks

    def _loop(self, x: torch.Tensor, state, new_sequence: bool = True):
        r, H = self.rnn, self.hidden
        h, c = (state[0][0], state[1][0]) if self.cell == "lstm" else (state[0], None)  # (batch, hidden)
        drop_x, drop_h = self._variational_masks(x, new_sequence)
        w_ih, w_hh = self.weights()
        x = x if drop_x is None else x * drop_x
        xw = torch.nn.functional.linear(x, w_ih, r.bias_ih_l0)  # (batch, time, gates * hidden)
        alpha = torch.sigmoid(self.alpha_logit) if self.alpha_logit is not None else None
        outs = []
        for t in range(x.shape[1]):
            hw = torch.nn.functional.linear(h if drop_h is None else h * drop_h, w_hh, r.bias_hh_l0)
            if self.cell == "lstm":
                i, f, g, o = self._layer_norm(xw[:, t] + hw, slice(0, 4)).chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(self._layer_norm(c, slice(4, 5)))
            elif self.cell == "gru":  # PyTorch's GRU: the reset gate multiplies W_hn h + b_hn
                rz = torch.sigmoid(self._layer_norm(xw[:, t, :2 * H] + hw[:, :2 * H], slice(0, 2)))
                n = torch.tanh(self._layer_norm(xw[:, t, 2 * H:] + rz[:, :H] * hw[:, 2 * H:], slice(2, 3)))
                h = (1 - rz[:, H:]) * n + rz[:, H:] * h
            else:
                f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[self.cell]
                new = f(self._layer_norm(xw[:, t] + hw, slice(0, 1)))
                h = new if alpha is None else alpha * h + (1 - alpha) * new
            outs.append(h)
        return torch.stack(outs, dim=1), ((h[None], c[None]) if self.cell == "lstm" else h[None])
