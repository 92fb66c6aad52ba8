"""The base of every sequence model of piano rolls, a LightningModule.

Every model factorises ``p(x_1..x_T) = prod_t p(x_t | u_{t-1})`` where ``u`` is the state of a
``RecurrentCore`` that has read frames ``< t``. ``SequenceModel`` holds the core, the training and
evaluation loops, the metrics and sampling; a subclass only says what distribution a frame has given
its conditioning vector ``cond (batch, time, hidden)``:

- ``log_prob(cond, x) -> (logp (batch, time), var or None)``: log-likelihood of each frame (``var``:
  variance of a stochastic estimate, for the RNN-RBM's AIS);
- ``loss(cond, x, mask) -> (scalar to minimise, logp (batch, time) or None)``;
- ``predict(cond) -> (batch, time, 88)`` binary: the model's guess of each frame, for frame accuracy;
- ``sample_frame(cond (batch, hidden), temperature) -> (batch, 88)`` binary.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from musicrnn.checkpoint import load_state
from musicrnn.core import RecurrentCore, detach_state
from musicrnn.errors import MusicrnnError
from musicrnn.metrics import FrameAccuracy, FrameNLL
from musicrnn.pianoroll import NUM_PITCHES

LOSS_REFRESH = 0.5  # seconds: how stale the progress bar's train/loss may get between logged steps


class SequenceModel(L.LightningModule):
    """Shared base of RNN, RNNNADE and RNNRBM (not used on its own).

    Args:
        hidden: units of the recurrent core.
        cell: tanh, relu, sigmoid, lstm or gru.
        leaky: leaky integration of the core: none, fixed or learned.
        max_timescale: longest time constant of leaky units, in frames.
        init: recurrent weight initialisation: default, orthogonal or identity.
        identity_scale: scale of the identity initialisation.
        learn_init: learn the initial state ``u_0``.
        dropout: dropout on the core's output.
        norm: none, layer (layer normalisation in the cell) or weight (weight normalisation).
        variational_dropout: the same dropout mask on inputs and recurrent state at every step.
        forget_bias: LSTM forget-gate bias at the start (1.0 is the usual choice); None: PyTorch's.
        lr: learning rate of the default optimizer (Adam); ``--optimizer`` replaces it.
        tbptt_steps: truncated backpropagation through time: cut each batch into chunks of this many
            frames, one optimizer step per chunk, the state carried from chunk to chunk but detached.
            Uses Lightning's manual optimisation (so an ``--lr_scheduler`` is not stepped; the
            ``NesterovMomentum`` callback's learning-rate halving works); None trains on whole sequences.
        init_from: checkpoint of a trained model whose recurrent core (same sizes) starts this one,
            as the paper pre-trains the RNN-RBM / RNN-NADE from an RNN.
    """

    # Whether training's products span every frame of a batch at once, wide enough for a second core:
    # ``train.py --threads 0`` then trains on the free cores (musicrnn/threads.py). Measured per model.
    wide_products = False

    def __init__(self, hidden: int = 300, cell: str = "tanh", leaky: str = "none", max_timescale: float = 100.0,
                 init: str = "default", identity_scale: float = 1.0, learn_init: bool = True,
                 dropout: float = 0.0, lr: float = 1e-3, tbptt_steps: int | None = None,
                 init_from: str | None = None, norm: str = "none", variational_dropout: float = 0.0,
                 forget_bias: float | None = None):
        super().__init__()
        self._loss_logged_at = -float("inf")  # when on_train_batch_end last logged train/loss (time.monotonic)
        if tbptt_steps is not None and tbptt_steps < 1:
            raise MusicrnnError(f"tbptt_steps must be >= 1, got {tbptt_steps}")
        self.save_hyperparameters()
        self.automatic_optimization = tbptt_steps is None
        self.core = RecurrentCore(NUM_PITCHES, hidden, cell, leaky, max_timescale, init, identity_scale,
                                  learn_init, dropout, norm, variational_dropout, forget_bias)
        self.train_nll, self.val_nll, self.test_nll = FrameNLL(), FrameNLL(), FrameNLL()
        self.val_acc, self.test_acc = FrameAccuracy(), FrameAccuracy()
        if init_from:
            core = {k[5:]: v for k, v in load_state(init_from)["state_dict"].items() if k.startswith("core.")}
            self.core.load_state_dict(core)

    # ---- what a subclass defines
    def log_prob(self, cond, x):
        raise NotImplementedError

    def predict(self, cond):
        raise NotImplementedError

    def sample_frame(self, cond, temperature: float):
        raise NotImplementedError

    def loss(self, cond, x, mask):
        """Default: the exact per-frame negative log-likelihood, averaged over the batch's frames."""
        logp, _ = self.log_prob(cond, x)
        return -(logp * mask).sum() / mask.sum(), logp

    # ---- Lightning
    def configure_optimizers(self):
        # fused: one kernel updates every parameter (CPU and CUDA have one); on the CPU ``foreach`` still
        # loops over the parameters op by op. Tutorial-size RNN-RBM, one thread: 0.14 against 0.30 ms a
        # step. The same update rule; the last bits of the numbers differ from the unfused kernels'.
        fused = self.device.type in ("cpu", "cuda") or None  # None: PyTorch's choice elsewhere
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, fused=fused)

    def training_step(self, batch, batch_idx):
        x, mask = batch["x"], batch["mask"]  # (batch, time, 88), (batch, time)
        inputs = batch.get("inputs", x)  # the frames the core reads: x, or ScheduledSampling's mix
        if self.automatic_optimization:
            cond, _ = self.core(inputs)
            loss, logp = self.loss(cond, x, mask)
            self._log_train([logp], [mask])
            return loss
        # Truncated BPTT (Lightning 2 dropped it): chunks of k frames, one step each, the state carried
        # over but detached so no gradient crosses a chunk boundary.
        opt, state, k = self.optimizers(), None, self.hparams.tbptt_steps
        losses, logps, masks = [], [], []
        for start in range(0, x.shape[1], k):
            xc, mc = x[:, start:start + k], mask[:, start:start + k]
            if not mc.any():  # only padding left
                break
            cond, state = self.core(inputs[:, start:start + k], state)
            loss, logp = self.loss(cond, xc, mc)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            state = detach_state(state)
            losses.append(loss.detach() * mc.sum())
            logps.append(None if logp is None else logp.detach())
            masks.append(mc)
        self._log_train(logps, masks)
        return torch.stack(losses).sum() / mask.sum()  # the batch's loss per frame, for on_train_batch_end

    def _log_train(self, logps: list, masks: list) -> None:
        """Update the exact train/nll with a batch's chunks' ``logp`` (the loss: ``on_train_batch_end``).

        Once per batch, after all its optimizer steps: in an epoch's first batch Lightning resets a
        hook's logged sums whenever the logging hook changes, so logging between steps would lose some.
        """
        if logps[0] is not None:
            for logp, m in zip(logps, masks):
                self.train_nll.update(logp.detach(), m)
            self.log("train/nll", self.train_nll, on_step=False, on_epoch=True)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Log the batch's ``train/loss`` (per frame) on the steps the loggers write, at an epoch's last batch,
        when the run stops, and otherwise at most every ``LOSS_REFRESH`` seconds for the progress bar.

        Why not every step: logging the loss (and counting the batch's frames for it) cost ~0.3 ms of a
        ~4 ms batch-1 RNN-RBM step through ``train.py`` (three runs each way); the loggers get the same
        values either way (``tests/test_models.py``).
        """
        t, now = self.trainer, time.monotonic()
        if (t._logger_connector.should_update_logs or t.should_stop or t.fit_loop.epoch_loop.batch_progress.is_last_batch
                or now - self._loss_logged_at >= LOSS_REFRESH):
            self.log("train/loss", outputs["loss"], prog_bar=True)
            self._loss_logged_at = now

    def score(self, batch, nll: FrameNLL, acc: FrameAccuracy, **budget) -> None:
        """Add a batch's log-likelihood and frame predictions to ``nll`` and ``acc``. ``budget``: settings
        of a stochastic ``log_prob`` (the RNN-RBM's ``ais_runs``, ``ais_steps``); none for exact models."""
        x, mask = batch["x"], batch["mask"]
        cond, _ = self.core(x)
        logp, var = self.log_prob(cond, x, **budget)
        nll.update(logp, mask, var)
        acc.update(self.predict(cond), x, mask)

    def _evaluate(self, batch, nll: FrameNLL, acc: FrameAccuracy, prefix: str, **budget) -> None:
        self.score(batch, nll, acc, **budget)
        self.log(f"{prefix}/nll", nll, prog_bar=True)
        self.log(f"{prefix}/frame_acc", acc)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_nll, self.val_acc, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_nll, self.test_acc, "test")

    def on_test_epoch_end(self):
        with self.test_nll.sync_context():  # all ranks' sums, before Lightning resets the metric
            self.log("test/nll_stderr", self.test_nll.standard_error().float())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["musicrnn_model"] = type(self).__name__  # which class rebuilds it
        # Lightning does not save the RNG: with it, a resumed run draws the same dropout masks.
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    # ---- sampling
    @torch.no_grad()
    def sample(self, num: int, steps: int, prime: torch.Tensor | None = None,
               temperature: float = 1.0, **frame_settings) -> torch.Tensor:
        """Sample ``num`` sequences of ``steps`` new frames as one batch -> ``(num, primed + steps, 88)``.

        ``prime (time, 88)``: frames the model reads first; they open every returned sequence.
        ``temperature`` scales every logit by ``1 / temperature`` (sharper below 1, flatter above).
        ``frame_settings`` go to ``sample_frame`` (the RNN-RBM's ``gibbs_steps``).
        """
        if num < 1 or steps < 0 or temperature <= 0:
            raise MusicrnnError("num must be >= 1, steps >= 0 and temperature > 0")
        was_training = self.training
        self.eval()
        state = self.core.initial_state(num)
        out = []
        if prime is not None and len(prime):
            prime = prime.to(self.device, torch.float32).expand(num, -1, -1)
            _, state = self.core(prime, state)
            out.append(prime)
        for _ in range(steps):
            h = (state[0] if isinstance(state, tuple) else state)[0]  # (num, hidden)
            frame = self.sample_frame(h, temperature, **frame_settings)  # (num, 88)
            out.append(frame[:, None])
            _, state = self.core(frame[:, None], state)
        self.train(was_training)
        return torch.cat(out, dim=1) if out else torch.zeros(num, 0, NUM_PITCHES, device=self.device)

