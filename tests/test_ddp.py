"""Data-parallel training (2 CPU processes, gloo) gives the same test metrics as one process."""

import json
import subprocess
import sys
from pathlib import Path

from musicrnn.evaluate import evaluate

ROOT = Path(__file__).resolve().parent.parent


def test_ddp_test_nll_equals_single_process_evaluation(jsb_root, tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "--model", "RNNNADE", "--model.hidden", "16",
           "--model.nade_hidden", "8", "--data.dataset", "jsb", "--data.root", str(jsb_root),
           "--data.batch_size", "2", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
           "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false",
           "--run_name", "ddp"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "checkpoints" / "ddp" / "summary.json").read_text())
    # The test split has 3 sequences: rank 0 gets 2 batches' worth, rank 1 one; nothing padded in.
    single = evaluate(str(tmp_path / "checkpoints" / "ddp" / "model.ckpt"), "jsb", str(jsb_root),
                      data_dir=str(tmp_path / "data"), batch_size=2, progress=False)
    assert abs(single["nll"] - summary["test/nll"]) < 1e-5
    assert abs(single["frame_acc"] - summary["test/frame_acc"]) < 1e-6
    # 6 training sequences in batches of 2 make 3 batches; each rank takes 1 per epoch (the odd one
    # out waits for the next shuffle), so 2 epochs are 2 synchronised optimizer steps.
    assert summary["optimizer_steps"] == 2
