"""Kill -9 in the middle of training, run the same command again: the result equals an uninterrupted run."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from musicrnn.checkpoint import CheckpointError, load_state

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS = 20, 3


def tiny_benchmark(folder: Path) -> None:
    """A benchmark-format pickle: 40 training sequences (20 batches of 2), a few to validate and test."""
    rng = np.random.default_rng(0)

    def seq():
        return [tuple(int(p) for p in rng.choice(np.arange(48, 72), rng.integers(0, 4), replace=False))
                for _ in range(rng.integers(8, 24))]

    corpus = {"train": [seq() for _ in range(2 * STEPS_PER_EPOCH)], "valid": [seq() for _ in range(4)],
              "test": [seq() for _ in range(4)]}
    folder.mkdir()
    (folder / "JSB Chorales.pickle").write_bytes(pickle.dumps(corpus))


def command(data: Path, checkpoints: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--data.dataset", "jsb", "--data.root", str(data),
            "--data.data_dir", str(data / "cache"), "--data.batch_size", "2", "--model.hidden", "16",
            "--trainer.max_epochs", str(EPOCHS), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--save_every_n_steps", "1", "--checkpoint_dir", str(checkpoints), "--run_name", "r", *extra]


def run(cmd: list[str], cwd: Path) -> dict:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((Path(cmd[cmd.index("--checkpoint_dir") + 1]) / "r" / "summary.json").read_text())


def step_of(path: Path) -> int:
    try:
        return load_state(path)["global_step"]
    except CheckpointError:  # not written yet
        return -1


@pytest.mark.parametrize("extra", [[], ["--model.dropout", "0.3"]], ids=["plain", "dropout"])
def test_kill_and_resume_matches_uninterrupted_run(tmp_path, extra):
    data = tmp_path / "data"
    tiny_benchmark(data)
    whole = run(command(data, tmp_path / "a", extra), tmp_path)

    cmd = command(data, tmp_path / "b", extra)
    last = tmp_path / "b" / "r" / "last.ckpt"
    child = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while step_of(last) < STEPS_PER_EPOCH + 5 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)  # a real kill -9, in the second epoch
    assert child.wait() == -signal.SIGKILL
    killed_at = step_of(last)
    assert STEPS_PER_EPOCH < killed_at < EPOCHS * STEPS_PER_EPOCH and killed_at % STEPS_PER_EPOCH, killed_at
    assert not (tmp_path / "b" / "r" / "summary.json").exists()

    resumed = run(cmd, tmp_path)
    assert resumed["optimizer_steps"] == whole["optimizer_steps"] == EPOCHS * STEPS_PER_EPOCH
    assert resumed["epochs"] == whole["epochs"]
    for key in ("test/nll", "test/frame_acc"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6, abs=1e-7), key
