"""Resuming: after kill -9 the same command ends as an uninterrupted run; a damaged checkpoint is no traceback."""

import csv
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
import torch

from musicrnn import train
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


# ---- a damaged checkpoint on resume: a warning and the newest intact one, or one line saying what to do
def tiny_run(jsb_root: Path, tmp: Path, *extra: str) -> list[str]:
    return ["--data.dataset", "jsb", "--data.root", str(jsb_root), "--data.data_dir", str(tmp / "cache"),
            "--model.hidden", "8", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--samples.every_n_epochs", "0",
            "--checkpoint_dir", str(tmp / "ck"), "--run_name", "r", *extra]


def truncate(path: Path) -> None:
    """What a full disk or a partial copy leaves: the first half of the file."""
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_damaged_last_checkpoint(jsb_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # without a logger, Lightning saves config.yaml in the working folder
    run = tmp_path / "ck" / "r"
    assert train.main(tiny_run(jsb_root, tmp_path, "--trainer.max_epochs", "1")) == 0
    best_step = load_state(run / "best.ckpt")["global_step"]
    truncate(run / "last.ckpt")
    capsys.readouterr()

    # auto: falls back to best.ckpt with a warning naming both, and trains on to the new max_epochs
    assert train.main(tiny_run(jsb_root, tmp_path, "--trainer.max_epochs", "2")) == 0
    err = capsys.readouterr().err
    assert f"warning: {run / 'last.ckpt'} is not a readable checkpoint" in err
    assert f"resuming instead from {run / 'best.ckpt'} (step {best_step})" in err and "Traceback" not in err
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2

    # nothing intact left: one line naming the file and what to do, exit 2
    truncate(run / "last.ckpt")
    truncate(run / "best.ckpt")
    assert train.main(tiny_run(jsb_root, tmp_path, "--trainer.max_epochs", "3")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot resume: {run / 'last.ckpt'} is not a readable")
    assert "--resume never" in err

    # --resume PATH to a damaged file: the same; --resume never: a fresh run over the damaged files
    assert train.main(tiny_run(jsb_root, tmp_path, "--resume", str(run / "best.ckpt"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot resume: {run / 'best.ckpt'} is not a readable")
    assert train.main(tiny_run(jsb_root, tmp_path, "--trainer.max_epochs", "1", "--resume", "never")) == 0
    assert "resuming" not in capsys.readouterr().out
    assert load_state(run / "last.ckpt")["global_step"] == best_step


def test_resume_from_a_chosen_checkpoint_and_refuse_another_model(jsb_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "ck" / "r"
    assert train.main(tiny_run(jsb_root, tmp_path, "--trainer.max_epochs", "1")) == 0
    chosen = tmp_path / "chosen.ckpt"
    chosen.write_bytes((run / "last.ckpt").read_bytes())
    capsys.readouterr()
    assert train.main(tiny_run(jsb_root, tmp_path, "--trainer.max_epochs", "2", "--run_name", "s",
                               "--resume", str(chosen))) == 0
    assert f"resuming from {chosen}" in capsys.readouterr().out
    assert json.loads((tmp_path / "ck" / "s" / "summary.json").read_text())["epochs"] == 2
    assert train.main(tiny_run(jsb_root, tmp_path, "--trainer.max_epochs", "2", "--model.hidden", "9")) == 2
    assert "holds a different model" in capsys.readouterr().err


def test_a_resumed_run_keeps_its_learning_curve(jsb_root, tmp_path, monkeypatch):
    """Lightning's CSV writer deletes metrics.csv when it starts: the epochs before a resume were lost."""
    monkeypatch.chdir(tmp_path)
    args = tiny_run(jsb_root, tmp_path)
    del args[args.index("--trainer.logger"):args.index("--trainer.logger") + 2]  # the default CSV logger
    assert train.main([*args, "--trainer.max_epochs", "2"]) == 0
    assert train.main([*args, "--trainer.max_epochs", "4"]) == 0  # resumes from last.ckpt, two more epochs
    with open(tmp_path / "runs" / "r" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["epoch"]) for r in rows if r.get("val/nll")) == [0, 1, 2, 3]
    assert sum(1 for r in rows if r.get("test/nll")) == 2  # each session's test of best.ckpt


def test_a_resumed_runs_training_time_counts_every_part(jsb_root, tmp_path, monkeypatch):
    """summary.json's train_seconds was the last part's alone. The first part is made to look an hour long
    by its checkpoint's Timer state, which a resumed run carries on from."""
    monkeypatch.chdir(tmp_path)
    args = tiny_run(jsb_root, tmp_path)
    assert train.main([*args, "--trainer.max_epochs", "2"]) == 0
    last = tmp_path / "ck" / "r" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["callbacks"]["Timer"]["time_elapsed"]["train"] > 0
    ckpt["callbacks"]["Timer"]["time_elapsed"]["train"] = 3600.0
    torch.save(ckpt, last)
    assert train.main([*args, "--trainer.max_epochs", "3"]) == 0  # one more epoch
    assert json.loads((tmp_path / "ck" / "r" / "summary.json").read_text())["train_seconds"] >= 3600
