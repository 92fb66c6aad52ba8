"""NonFiniteGuard in real training runs: NaN batches are skipped and counted; a NaN streak stops the run."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from musicrnn.data import collate
from musicrnn.guard import NonFiniteError, NonFiniteGuard, all_finite
from musicrnn.models import RNN


def rolls(n: int, nan_at: set[int]) -> list[torch.Tensor]:
    """``n`` random sequences; those in ``nan_at`` hold a NaN (a corrupt input that poisons the loss)."""
    g = torch.Generator().manual_seed(0)
    out = [(torch.rand(12, 88, generator=g) < 0.05).float() for _ in range(n)]
    for i in nan_at:
        out[i][3, 40] = float("nan")
    return out


def fit(data: list[torch.Tensor], guard: NonFiniteGuard, tmp_path, **trainer) -> tuple[RNN, L.Trainer]:
    torch.manual_seed(0)
    model = RNN(hidden=8)
    t = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                  enable_model_summary=False, default_root_dir=tmp_path, callbacks=[guard, *trainer.pop("callbacks", [])],
                  **trainer)
    t.fit(model, DataLoader(data, batch_size=1, collate_fn=collate))
    return model, t


def test_nan_batches_are_skipped_and_counted(tmp_path):
    guard = NonFiniteGuard(patience=3)
    model, trainer = fit(rolls(8, nan_at={2, 5}), guard, tmp_path, enable_checkpointing=False)
    assert guard.skipped == 2
    assert trainer.callback_metrics["train/skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # Adam's own step count shows the two skipped steps never reached the weights.
    optimizer = trainer.optimizers[0]
    assert {int(s["step"]) for s in optimizer.state.values()} == {6}


def test_without_the_guard_nan_reaches_the_weights(tmp_path):
    torch.manual_seed(0)
    model = RNN(hidden=8)
    L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
              enable_model_summary=False).fit(model, DataLoader(rolls(4, nan_at={1}), batch_size=1, collate_fn=collate))
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_a_streak_stops_the_run_naming_epoch_batch_and_checkpoint(tmp_path):
    saver = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=1, save_top_k=0, save_last=True)
    with pytest.raises(NonFiniteError) as e:
        fit(rolls(12, nan_at=set(range(4, 12))), NonFiniteGuard(patience=3), tmp_path, callbacks=[saver])
    message = str(e.value)
    assert "\n" not in message
    assert "epoch 0, batch 6" in message  # batches 4, 5 and 6 were the three in a row
    assert str(tmp_path / "ck" / "last.ckpt") in message


def test_all_finite_finds_any_nan_or_inf_in_any_tensor_and_changes_none():
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(s, generator=g).to(dt) for s, dt in
               [((5, 7), torch.float32), ((3,), torch.float64), ((4, 2), torch.bfloat16), ((6,), torch.float32)]]
    kept = [t.clone() for t in tensors]
    assert all_finite(tensors)
    for t, k in zip(tensors, kept):
        assert torch.equal(t, k)
    for i, t in enumerate(tensors):
        for bad in (float("nan"), float("inf"), -float("inf")):
            flat = t.view(-1)
            j = int(torch.randint(len(flat), (), generator=g))
            flat[j] = bad
            assert not all_finite(tensors), (i, bad)
            flat[j] = kept[i].view(-1)[j]
    assert all_finite(tensors)
