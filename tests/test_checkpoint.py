"""Checkpoints: foreign, damaged or mismatched files give one-line errors; a killed save keeps the old file."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from musicrnn.checkpoint import CheckpointError, atomic_save, load_state
from musicrnn.models import RNN, load_model

ROOT = Path(__file__).resolve().parents[1]


def checkpoint(hidden: int = 8) -> dict:
    model = RNN(hidden=hidden)
    return {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "musicrnn_model": "RNN",
            "datamodule_hyper_parameters": {"dataset": "jsb"}}


def one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_good_checkpoint_loads(tmp_path):
    atomic_save(checkpoint(), tmp_path / "a.ckpt")
    model, data = load_model(tmp_path / "a.ckpt")
    assert isinstance(model, RNN) and model.hparams.hidden == 8 and data == {"dataset": "jsb"}


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04" + os.urandom(300)])
def test_foreign_bytes(tmp_path, content):
    (tmp_path / "x.ckpt").write_bytes(content)
    assert "not a readable checkpoint" in one_line_error(tmp_path / "x.ckpt")


def test_truncated(tmp_path):
    atomic_save(checkpoint(), tmp_path / "a.ckpt")
    data = (tmp_path / "a.ckpt").read_bytes()
    (tmp_path / "a.ckpt").write_bytes(data[:len(data) // 2])
    assert "not a readable checkpoint" in one_line_error(tmp_path / "a.ckpt")


def test_missing_and_not_a_model(tmp_path):
    assert "not found" in one_line_error(tmp_path / "none.ckpt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "b.ckpt")
    assert "no state_dict" in one_line_error(tmp_path / "b.ckpt")
    atomic_save({**checkpoint(), "musicrnn_model": "Transformer"}, tmp_path / "c.ckpt")
    assert "expected one of RNN" in one_line_error(tmp_path / "c.ckpt")


def test_mismatched_shapes(tmp_path):
    ckpt = checkpoint(hidden=8)
    ckpt["hyper_parameters"]["hidden"] = 16  # the settings say 16 units, the weights have 8
    atomic_save(ckpt, tmp_path / "a.ckpt")
    assert "does not fit a RNN" in one_line_error(tmp_path / "a.ckpt")


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_code_in_a_checkpoint_is_not_run(tmp_path):
    canary = tmp_path / "ran"
    torch.save({**checkpoint(), "extra": Payload(str(canary))}, tmp_path / "evil.ckpt")
    assert "not a readable checkpoint" in one_line_error(tmp_path / "evil.ckpt")
    assert not canary.exists()


class Explodes:
    def __reduce__(self):
        raise RuntimeError("disk full, say")


def test_failed_save_leaves_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_save(checkpoint(), path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        atomic_save({**checkpoint(), "x": Explodes()}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


SAVER = textwrap.dedent("""
    import sys, time
    from musicrnn.checkpoint import atomic_save
    from musicrnn.models import RNN

    class Slow:  # pickled in the middle of the save: the process is killed right there
        def __reduce__(self):
            time.sleep(60)
            return int, ()

    model = RNN(hidden=8)
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "musicrnn_model": "RNN"}
    atomic_save({**ckpt, "global_step": 1}, sys.argv[1])
    print("saved", flush=True)
    atomic_save({**ckpt, "global_step": 2, "slow": Slow()}, sys.argv[1])
""")


def test_kill_during_save_leaves_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    child = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "saved"  # the first save is complete; the second one starts
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".last.ckpt.*.part")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp_path.glob(".last.ckpt.*.part")), "the second save never started"
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert load_state(path)["global_step"] == 1
    load_model(path)


@pytest.mark.parametrize("name, cls", [("rnn", "RNN"), ("rnn_nade", "RNNNADE"), ("rnn_rbm", "RNNRBM")])
def test_committed_checkpoints_still_load(name, cls):
    """They name their class (``musicrnn_model``), not its module: written when the models lived in
    musicrnn/model.py, nade.py and rbm.py, they load from musicrnn/models/."""
    path = Path(__file__).resolve().parents[1] / "checkpoints" / "jsb" / f"{name}.ckpt"
    model, data = load_model(path)
    assert type(model).__name__ == cls and data["dataset"] == "jsb"
