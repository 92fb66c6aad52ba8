import lightning as L
import pytest
import torch

from musicrnn.data import PianorollDataModule, collate
from musicrnn.metrics import FrameAccuracy, FrameNLL
from musicrnn.models import RNN


def test_nll_is_total_over_frames_not_mean_of_batch_means():
    m = FrameNLL()
    # batch 1: one sequence of 2 frames (and one padding frame); batch 2: 4 frames
    m.update(torch.tensor([[-1.0, -2.0, -50.0]]), torch.tensor([[True, True, False]]))
    m.update(torch.tensor([[-3.0, -3.0, -3.0, -3.0]]), torch.ones(1, 4, dtype=torch.bool))
    assert m.compute().item() == 15 / 6  # not the mean of batch means, (1.5 + 3) / 2


def test_frame_accuracy_counts():
    a = FrameAccuracy()
    target = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]]]).float()
    pred = torch.tensor([[[1, 0, 1, 0], [1, 1, 1, 1]]]).float()  # frame 2 is padding
    a.update(pred, target, torch.tensor([[True, False]]))
    assert a.compute().item() == pytest.approx(1 / 3)  # TP 1, FP 1, FN 1


def test_model_nll_equals_per_sequence_hand_computation(jsb_root, tmp_path):
    """Padded, bucketed batches give exactly sum(log p) / frames over unpadded sequences."""
    torch.manual_seed(0)
    model = RNN(hidden=8)
    dm = PianorollDataModule("jsb", str(jsb_root), str(tmp_path / "data"), batch_size=2)
    result = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(
        model, datamodule=dm, verbose=False)[0]
    total, frames = 0.0, 0
    with torch.no_grad():
        for roll in dm.splits["test"]:
            b = collate([roll])
            logp, _ = model.log_prob(model.core(b["x"])[0], b["x"])
            total += logp.sum().item()
            frames += len(roll)
    assert abs(result["test/nll"] - (-total / frames)) < 1e-5
