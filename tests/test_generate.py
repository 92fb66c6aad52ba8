"""generate.py end to end on tiny 1-step-trained checkpoints of every model, in a temporary folder."""

import os
import subprocess
import sys
import wave
from pathlib import Path

import lightning as L
import numpy as np
import pretty_midi
import pytest
import torch

from musicrnn import generate
from musicrnn.checkpoint import atomic_save
from musicrnn.data import PianorollDataModule
from musicrnn.models import RNN, RNNNADE, RNNRBM
from musicrnn.pianoroll import file_to_roll, roll_to_midi

ROOT = Path(__file__).resolve().parents[1]
FPB = 2  # frames per beat of the test corpus
MODELS = {"RNN": lambda: RNN(hidden=16), "RNNNADE": lambda: RNNNADE(hidden=16, nade_hidden=8),
          "RNNRBM": lambda: RNNRBM(hidden=16, rbm_hidden=8, cd_steps=1, gibbs_steps=3)}


def write_midi(path: Path, roll: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    roll_to_midi(roll, FPB, 120).write(str(path))
    return path


def scale_roll(start: int, frames: int = 12) -> np.ndarray:
    """A rising C-major line over a held low C: ``(frames, 88)``."""
    roll = np.zeros((frames, 88), dtype=np.uint8)
    roll[:, 60 - 21 - 12] = 1
    for t in range(frames):
        roll[t, start - 21 + [0, 2, 4, 5, 7, 9, 11][t % 7]] = 1
    return roll


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """``{model name: checkpoint}`` each trained one step on a 3-piece MIDI folder corpus."""
    tmp = tmp_path_factory.mktemp("ckpts")
    for i, split in enumerate(("train", "valid", "test")):
        write_midi(tmp / "corpus" / split / f"piece{i}.mid", scale_roll(60 + 2 * i))
    out = {}
    for name, make in MODELS.items():
        torch.manual_seed(0)
        dm = PianorollDataModule("folder", str(tmp / "corpus"), str(tmp / "data"), batch_size=1,
                                 frames_per_beat=FPB, transpose_to_c=False)
        trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(make(), datamodule=dm)
        out[name] = tmp / f"{name}.ckpt"
        trainer.save_checkpoint(out[name])
    return out


def run(argv, capsys):
    code = generate.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", MODELS)
def test_writes_midi_png_and_wav(ckpts, tmp_path, capsys, name):
    code, out, err = run(["--ckpt", ckpts[name], "--num", 2, "--steps", 10, "--seed", 1, "--audio",
                          "--gibbs-steps", 2, "--out", tmp_path / "s"], capsys)
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == [f"sample-seed1-0{i}.{ext}" for i in (1, 2) for ext in ("mid", "png", "wav")]
    for i in (1, 2):
        stem = tmp_path / "s" / f"sample-seed1-0{i}"
        pm = pretty_midi.PrettyMIDI(str(stem.with_suffix(".mid")))
        assert pm.instruments and pm.instruments[0].notes
        # 10 frames at 2 per beat and 120 bpm last 2.5 s
        assert pm.get_end_time() <= 2.5 + 1e-6
        assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with wave.open(str(stem.with_suffix(".wav"))) as w:
            assert w.getsampwidth() == 2 and w.getnframes() > 0
    assert "#1" in out and "#2" in out and "folder train (1 pieces)" in out
    assert ("AIS estimate" in out) == (name == "RNNRBM")
    assert ("--gibbs-steps only applies" in err) == (name != "RNNRBM")


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_bytes(ckpts, tmp_path, capsys, name):
    def midi(seed, folder):
        assert run(["--ckpt", ckpts[name], "--num", 2, "--steps", 12, "--seed", seed, "--out", tmp_path / folder],
                   capsys)[0] == 0
        return [(tmp_path / folder / f"sample-seed{seed}-0{i}.mid").read_bytes() for i in (1, 2)]

    assert midi(5, "a") == midi(5, "b")
    assert midi(6, "c") != midi(5, "a")


@pytest.mark.parametrize("name", MODELS)
def test_prime_opens_the_output(ckpts, tmp_path, capsys, name):
    prime = write_midi(tmp_path / "prime.mid", scale_roll(72, 20))
    code, out, err = run(["--ckpt", ckpts[name], "--num", 2, "--steps", 8, "--seed", 2, "--prime", prime,
                          "--prime-steps", 6, "--out", tmp_path / "s"], capsys)
    assert code == 0, err
    expected, _ = file_to_roll(prime, frames_per_beat=FPB)
    for i in (1, 2):
        roll, _ = file_to_roll(tmp_path / "s" / f"sample-seed2-0{i}.mid", frames_per_beat=FPB)
        assert len(roll) <= 6 + 8
        np.testing.assert_array_equal(roll[:6], expected[:6])
    assert "8 frames after the 6-frame prime" in out


def test_newest_checkpoint_is_the_default(ckpts, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "checkpoints" / "run"
    folder.mkdir(parents=True)
    for age, name in [(100, "old.ckpt"), (0, "new.ckpt")]:
        (folder / name).write_bytes(ckpts["RNN"].read_bytes())
        os.utime(folder / name, (1e9 - age, 1e9 - age))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["--num", 1, "--steps", 4, "--seed", 0], capsys)
    assert code == 0, err
    assert "new.ckpt, the newest checkpoint" in out
    assert (tmp_path / "samples" / "sample-seed0-01.mid").is_file()


def test_unreadable_corpus_still_prints_samples(ckpts, tmp_path, capsys):
    ckpt = torch.load(ckpts["RNN"], weights_only=True)
    ckpt["datamodule_hyper_parameters"]["root"] = str(tmp_path / "nowhere")
    atomic_save(ckpt, tmp_path / "moved.ckpt")
    code, out, err = run(["--ckpt", tmp_path / "moved.ckpt", "--num", 1, "--steps", 4, "--out", tmp_path / "s"],
                         capsys)
    assert code == 0, err
    assert "#1" in out and "corpus statistics unavailable" in out and "nowhere does not exist" in out


def fake_fluidsynth(folder: Path, fail: bool) -> None:
    """A ``fluidsynth`` on PATH that writes a marker to the file after ``-F`` (or fails)."""
    folder.mkdir()
    script = folder / "fluidsynth"
    script.write_text("#!/bin/sh\n" + ("echo 'fluidsynth: broken soundfont' >&2; exit 1\n" if fail else
                      'while [ $# -gt 0 ]; do [ "$1" = -F ] && out="$2"; shift; done\nprintf RIFFfake > "$out"\n'))
    script.chmod(0o755)


@pytest.mark.parametrize("fail", [False, True])
def test_fluidsynth_used_when_installed(ckpts, tmp_path, capsys, monkeypatch, fail):
    fake_fluidsynth(tmp_path / "bin", fail)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "gm.sf2").write_bytes(b"sf2")
    code, out, err = run(["--ckpt", ckpts["RNN"], "--num", 2, "--steps", 4, "--seed", 0, "--audio",
                          "--soundfont", tmp_path / "gm.sf2", "--out", tmp_path / "s"], capsys)
    if fail:  # the MIDI and PNG were ready when the WAV failed: none of them may appear
        assert code == 2 and err == "error: fluidsynth failed: fluidsynth: broken soundfont\n"
        assert list((tmp_path / "s").iterdir()) == []
    else:
        assert code == 0 and "audio by FluidSynth (gm.sf2)" in out
        assert (tmp_path / "s" / "sample-seed0-02.wav").read_bytes() == b"RIFFfake"


@pytest.mark.parametrize("args, message", [
    (["--ckpt", "{tmp}/missing.ckpt"], "not found"),
    (["--ckpt", "{tmp}/foreign.ckpt"], "not a musicrnn checkpoint"),
    (["--ckpt", "{tmp}/text.ckpt"], "not a readable checkpoint"),
    (["--prime", "{tmp}/bad.mid"], "bad.mid: cannot be read"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--num", "-1"], "--num must be at least 1"),
    (["--prime", "{tmp}/bad.mid", "--prime-steps", "-3"], "--prime-steps must be at least 1"),
    (["--gibbs-steps", "-1"], "--gibbs-steps must be at least 1"),
    (["--temperature", "0"], "must be positive"),
    (["--program", "128"], "--program must be at most 127"),
    (["--steps", "many"], "invalid int value"),
])
def test_bad_input_one_line_exit_2_no_files(ckpts, tmp_path, capsys, args, message):
    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "foreign.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    (tmp_path / "bad.mid").write_bytes(b"MThd garbage")
    args = [a.format(tmp=tmp_path) for a in args]
    if "--ckpt" not in args:
        args += ["--ckpt", str(ckpts["RNN"])]
    code, out, err = run(args + ["--out", tmp_path / "s"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "s").exists()


def test_command_line(tmp_path):
    done = subprocess.run([sys.executable, "generate.py", "--ckpt", str(tmp_path / "none.ckpt"), "--out",
                           str(tmp_path / "s")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr == f"error: checkpoint {tmp_path / 'none.ckpt'} not found\n"
    assert not (tmp_path / "s").exists()
