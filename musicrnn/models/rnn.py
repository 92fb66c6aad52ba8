"""The plain RNN baseline: independent sigmoid outputs per pitch given the recurrent state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicrnn.models.base import SequenceModel
from musicrnn.pianoroll import NUM_PITCHES


class RNN(SequenceModel):
    """Baseline: the recurrent core with independent sigmoid outputs, ``p(x_t,i = 1) = sigm(W_o u_{t-1} + b_o)_i``.

    Frame accuracy counts a pitch as predicted when its probability exceeds 1/2.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.out = nn.Linear(self.hparams.hidden, NUM_PITCHES)

    def log_prob(self, cond, x):
        return -F.binary_cross_entropy_with_logits(self.out(cond), x, reduction="none").sum(-1), None

    def predict(self, cond):
        return self.out(cond) > 0

    def sample_frame(self, cond, temperature):
        return torch.bernoulli(torch.sigmoid(self.out(cond) / temperature))
