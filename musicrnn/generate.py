"""Sample new music from a trained checkpoint: per sample a MIDI file, a piano-roll PNG and, with
``--audio``, a WAV; then a table comparing the samples with the training corpus.

    python generate.py --ckpt checkpoints/jsb-rnn/model.ckpt --num 4 --steps 256 --out samples/
    python generate.py --num 4 --steps 128 --seed 1 --audio        # the newest checkpoint under checkpoints/
    python generate.py --prime opening.mid --prime-steps 32 --steps 96 --temperature 0.8

Files are named ``sample-seed<SEED>-<N>.{mid,png,wav}``; the same seed gives the same files. All of them
are written under temporary names and renamed only once every one is complete, so a failure leaves none.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import torch
from rich.console import Console
from rich.table import Table

from musicrnn.atomic import write_beside
from musicrnn.checkpoint import CheckpointError
from musicrnn.cli import ArgumentParser, run_command, seed as seed_type
from musicrnn.corpora import CorpusError
from musicrnn.data import PianorollDataModule, frames_per_beat_of
from musicrnn.errors import MusicrnnError
from musicrnn.models import RNNRBM, load_model
from musicrnn.pianoroll import FRAMES_PER_BEAT, file_to_roll, roll_to_midi, rolls_to_stats
from musicrnn.render import midi_to_wav, roll_to_png

LL_AIS_RUNS, LL_AIS_STEPS = 10, 100  # RNN-RBM: a quick AIS estimate is enough for the summary


def newest_checkpoint(folder: str | Path = "checkpoints") -> Path:
    """The most recently modified ``*.ckpt`` anywhere under ``folder``."""
    found = [p for p in Path(folder).rglob("*.ckpt") if p.is_file()]
    if not found:
        raise CheckpointError(f"no --ckpt given and no *.ckpt under {folder}/")
    return max(found, key=lambda p: p.stat().st_mtime)


@torch.no_grad()
def log_likelihood_per_frame(model, x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Sequences ``x (batch, time, 88)`` -> their mean log-likelihood per frame over frames ``start:``,
    ``(batch,)`` (the frames before ``start`` still condition the rest)."""
    cond, _ = model.core(x)
    budget = {"ais_runs": LL_AIS_RUNS, "ais_steps": LL_AIS_STEPS} if isinstance(model, RNNRBM) else {}
    logp, _ = model.log_prob(cond, x, **budget)
    return logp[:, start:].mean(1)


def corpus_stats(data_hp: dict) -> tuple[str, dict]:
    """The training split of the checkpoint's corpus -> ``(label, rolls_to_stats)``; raises if unreadable."""
    train = PianorollDataModule.from_settings(data_hp).load()["train"]
    return f"{data_hp['dataset']} train ({len(train)} pieces)", rolls_to_stats(train)


def print_summary(rows: list[tuple[str, dict, float | None]], notes: list[str]) -> None:
    """One table row per ``(label, rolls_to_stats, log-likelihood per frame or None)``, then each note
    on its own line."""
    table = Table(title="samples and training corpus")
    for col in ("", "frames", "notes", "polyphony", "pitch range", "empty", "log-lik/frame"):
        table.add_column(col, justify="left" if col in ("", "pitch range") else "right")
    for label, s, ll in rows:
        span = "-" if s["pitch_min"] is None else \
            f"{pretty_midi.note_number_to_name(s['pitch_min'])}-{pretty_midi.note_number_to_name(s['pitch_max'])}"
        table.add_row(label, str(s["frames"]), str(s["notes"]), f"{s['mean_polyphony']:.2f}", span,
                      f"{100 * s['empty']:.0f}%", "-" if ll is None else f"{ll:.2f}")
    Console(width=max(Console().width, 100)).print(table)
    for note in notes:
        print(note)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python generate.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint to sample from (default: the newest *.ckpt under checkpoints/)")
    p.add_argument("--out", default="samples", help="folder for the files (default: samples)")
    p.add_argument("--num", type=int, default=4, help="samples, drawn together as one batch (default: 4)")
    p.add_argument("--steps", type=int, default=256, help="frames to generate per sample (default: 256)")
    p.add_argument("--seed", type=seed_type, help="random seed; the same seed gives identical files (default: random)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divides every logit: below 1 sharper, above 1 flatter (default: 1)")
    p.add_argument("--gibbs-steps", type=int,
                   help="RNN-RBM: Gibbs steps per generated frame (default: the model's gibbs_steps)")
    p.add_argument("--prime", help="MIDI, ABC or MusicXML file whose opening the model reads and continues")
    p.add_argument("--prime-steps", type=int,
                   help="frames of --prime to read; the output is these frames then --steps new ones (default: 32)")
    p.add_argument("--bpm", type=float, default=120.0,
                   help="tempo of the MIDI file, quarter notes per minute (default: 120)")
    p.add_argument("--program", type=int, default=0, help="General MIDI program 0-127 (default: 0, piano)")
    p.add_argument("--audio", action="store_true", help="also write a WAV: FluidSynth if installed, else sine waves")
    p.add_argument("--soundfont", help="SoundFont (.sf2) for FluidSynth (default: a system General MIDI one)")
    a = p.parse_args(argv)
    for name, low in [("num", 1), ("steps", 1), ("gibbs_steps", 1), ("prime_steps", 1), ("program", 0)]:
        if getattr(a, name) is not None and getattr(a, name) < low:
            raise MusicrnnError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(a, name)}")
    if a.program > 127:
        raise MusicrnnError(f"--program must be at most 127, got {a.program}")
    if not (a.temperature > 0 and a.bpm > 0):
        raise MusicrnnError("--temperature and --bpm must be positive")
    if a.prime_steps is not None and not a.prime:
        raise MusicrnnError("--prime-steps needs --prime")
    if a.soundfont and not Path(a.soundfont).is_file():
        raise MusicrnnError(f"soundfont {a.soundfont} not found")
    return a


def write_samples(rolls: np.ndarray, prefix: Path, start: int, frames_per_beat: float, a: argparse.Namespace,
                  title: str) -> tuple[int, str | None]:
    """Rolls ``(num, time, 88)`` -> ``<prefix>-<N>.mid``, ``.png`` (a line at frame ``start`` if > 0) and,
    with ``a.audio``, ``.wav``; all staged first and renamed together. Returns ``(files, synthesiser)``."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staged, synth = [], None
    try:
        for i, roll in enumerate(rolls):
            stem = Path(f"{prefix}-{i + 1:02d}")
            pm = roll_to_midi(roll, frames_per_beat, a.bpm, a.program)
            midi = io.BytesIO()
            pm.write(midi)
            files = {".mid": midi.getvalue(), ".png": roll_to_png(roll, start or None, frames_per_beat,
                                                                  f"{title}  #{i + 1}")}
            if a.audio:
                files[".wav"], synth = midi_to_wav(pm, soundfont=a.soundfont)
            for ext, data in files.items():
                staged.append((write_beside(stem.with_suffix(ext), lambda f: f.write(data)), stem.with_suffix(ext)))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return len(staged), synth


def generate(a: argparse.Namespace) -> None:
    ckpt = Path(a.ckpt) if a.ckpt else newest_checkpoint()
    if not a.ckpt:
        print(f"using {ckpt}, the newest checkpoint under checkpoints/")
    model, data_hp = load_model(ckpt)
    is_rbm = isinstance(model, RNNRBM)
    frame_settings = {"gibbs_steps": a.gibbs_steps} if is_rbm and a.gibbs_steps is not None else {}
    if a.gibbs_steps is not None and not is_rbm:
        print(f"note: --gibbs-steps only applies to the RNN-RBM; ignored for {type(model).__name__}",
              file=sys.stderr)
    if data_hp:
        frames_per_beat, fs = frames_per_beat_of(data_hp), data_hp.get("fs")
    else:
        frames_per_beat, fs = FRAMES_PER_BEAT, None
        print(f"note: the checkpoint holds no data settings; playing {FRAMES_PER_BEAT} frame(s) per beat",
              file=sys.stderr)
    prime = None
    if a.prime:
        roll, _ = file_to_roll(a.prime, frames_per_beat=frames_per_beat, fs=fs)
        prime = torch.from_numpy(roll[:a.prime_steps or 32]).float()
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise MusicrnnError(f"--out {out} is a file, not a folder")

    seed = a.seed if a.seed is not None else secrets.randbelow(2 ** 31)
    torch.manual_seed(seed)
    x = model.sample(a.num, a.steps, prime, a.temperature, **frame_settings)  # (num, primed + steps, 88)
    start = 0 if prime is None else len(prime)
    ll = log_likelihood_per_frame(model, x, start).tolist()
    rolls = x.numpy().astype(np.uint8)

    playback_fpb = fs * 60.0 / a.bpm if fs else frames_per_beat  # fixed-rate frames last 1/fs s
    try:
        written, synth = write_samples(rolls, out / f"sample-seed{seed}", start, playback_fpb, a,
                                       title=f"{ckpt.name}  seed {seed}")
    except OSError as e:  # a full disk or a folder the user cannot write: bad input, not a bug
        raise MusicrnnError(f"cannot write the samples to {out}/ ({e.strerror or e})") from e
    print(f"{type(model).__name__} from {ckpt}, seed {seed}: wrote {written} files to {out}/"
          + (f" (audio by {synth})" if synth else ""))
    rows = [(f"#{i + 1}", rolls_to_stats([r[start:]]), v) for i, (r, v) in enumerate(zip(rolls, ll))]
    notes = []
    try:
        if not data_hp:
            raise CorpusError("the checkpoint does not name its training corpus")
        label, stats = corpus_stats(data_hp)
        rows.append((label, stats, None))
    except (CorpusError, OSError, TypeError, ValueError) as e:
        notes.append(f"corpus statistics unavailable: {str(e).strip().splitlines()[0]}")
    if start:
        notes.append(f"samples: the {a.steps} frames after the {start}-frame prime")
    if is_rbm:
        notes.append(f"RNN-RBM log-likelihood: AIS estimate ({LL_AIS_RUNS} runs, {LL_AIS_STEPS} steps)")
    print_summary(rows, notes)


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda args: generate(parse_args(args)), argv)


if __name__ == "__main__":
    sys.exit(main())
