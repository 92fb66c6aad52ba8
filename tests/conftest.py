"""Tiny real files for tests: MIDI written with pretty_midi, benchmark pickles written with pickle."""

import pickle

import lightning as L
import pretty_midi
import pytest
import torch
from torch.utils.data import DataLoader


def write_midi(path, notes, bpm=120.0, key_number=None, drums=(), extra_tempo=None):
    """``notes``: (pitch, start_beat, end_beat) in quarter notes at ``bpm``. Returns the path."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    spb = 60.0 / bpm
    inst = pretty_midi.Instrument(program=0)
    for pitch, s, e in notes:
        inst.notes.append(pretty_midi.Note(90, pitch, s * spb, e * spb))
    pm.instruments.append(inst)
    if drums:
        d = pretty_midi.Instrument(program=0, is_drum=True)
        for pitch, s, e in drums:
            d.notes.append(pretty_midi.Note(90, pitch, s * spb, e * spb))
        pm.instruments.append(d)
    if key_number is not None:
        pm.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
    pm.write(str(path))
    return path


def scale_piece(offset=0, beats=16):
    """A C-major scale melody over a held bass note, shifted by ``offset`` semitones."""
    steps = [0, 2, 4, 5, 7, 9, 11, 12]
    notes = [(60 + offset + steps[i % 8], i, i + 1) for i in range(beats)]
    return notes + [(48 + offset, 0, beats)]


@pytest.fixture
def midi_folder(tmp_path):
    """A folder with train/valid/test subfolders holding a few small MIDI files."""
    root = tmp_path / "midi"
    for split, n in (("train", 4), ("valid", 2), ("test", 2)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            write_midi(root / split / f"{split}{i}.mid", scale_piece(offset=i, beats=12 + 2 * i))
    return root


def write_benchmark(folder, name="JSB Chorales", sizes=(6, 3, 3), seed=0):
    """A benchmark-format pickle (split -> sequences -> frames -> pitch tuples) with random chords."""
    import random

    rng = random.Random(seed)
    data = {split: [[tuple(sorted(rng.sample(range(48, 80), rng.randint(0, 4))))
                     for _ in range(rng.randint(8, 20))] for _ in range(n)]
            for split, n in zip(("train", "valid", "test"), sizes)}
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.pickle", "wb") as f:
        pickle.dump(data, f)
    return data


@pytest.fixture
def jsb_root(tmp_path):
    write_benchmark(tmp_path / "pickles")
    return tmp_path / "pickles"


def tiny_batch(batch=3, time=10, seed=0):
    """``{"x": (batch, time, 88), "mask": (batch, time)}`` with one shorter, padded sequence."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, time, 88, generator=g) < 0.1).float()
    mask = torch.ones(batch, time, dtype=torch.bool)
    mask[0, time - 3:] = False
    x[~mask] = 0
    return {"x": x, "mask": mask}


@pytest.fixture
def fit_tiny():
    """``fit_tiny(model, callbacks, batches=1, epochs=1, **trainer_kwargs)``: a real CPU Trainer on tiny
    random batches."""
    def fit(model, callbacks=(), batches=1, epochs=1, **trainer_kwargs):
        data = DataLoader([tiny_batch(seed=i) for i in range(batches)], batch_size=None)
        kwargs = {"logger": False, **trainer_kwargs}
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                            **kwargs)
        trainer.fit(model, train_dataloaders=data)
        return trainer
    return fit
