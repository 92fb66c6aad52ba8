"""``PianorollDataModule``: a corpus as padded ``(batch, time, 88)`` batches with a ``(batch, time)`` mask.

Run ``python -m musicrnn.data NAME [--root DIR]`` to print a corpus's statistics, and
``python -m musicrnn.data compare ROOT --benchmark PICKLE`` to compare MIDI files with a benchmark
(``musicrnn.compare``).
"""

from __future__ import annotations

import inspect
import sys
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from musicrnn import compare
from musicrnn.cli import ArgumentParser, run_command
from musicrnn.corpora import DATASETS, SPLITS, CorpusError, load_corpus
from musicrnn.pianoroll import FRAMES_PER_BEAT, NUM_PITCHES, rolls_to_stats

# Frames per quarter note to play a benchmark back at its own speed. JSB is in quarter notes;
# Piano-midi.de in eighths; Nottingham was sampled at 4 frames/s, i.e. eighths at 120 bpm; MuseData
# likewise (the benchmark did not record it).
BENCHMARK_FRAMES_PER_BEAT = {"jsb": 1, "nottingham": 2, "musedata": 2, "piano-midi": 2}


def frames_per_beat_of(data_hparams) -> int:
    """Frames per quarter note of the corpus that a data module's settings describe."""
    return BENCHMARK_FRAMES_PER_BEAT.get(data_hparams.get("dataset"),
                                         data_hparams.get("frames_per_beat", FRAMES_PER_BEAT))


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar length (little padding), a disjoint share per distributed rank.

    Each epoch the indices are shuffled with ``seed + epoch``, cut into pools of 50 batches, each pool
    sorted by length and cut into batches, and the batches shuffled. Rank ``r`` of ``world`` takes
    batches ``r, r + world, ...``; with ``even=True`` (training) every rank gets the same number of
    batches, so no rank waits at a gradient all-reduce that others never reach.
    """

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world: int = 1, even: bool = False):
        self.lengths, self.batch_size, self.shuffle, self.seed = np.asarray(lengths), batch_size, shuffle, seed
        self.rank, self.world, self.even, self.epoch = rank, world, even, 0
        self.start = 0  # batches of the next pass to leave out (set by ResumableLoader, for one pass)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self):
        """Itself. Lightning calls ``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler``,
        never on the batch sampler itself; without this every epoch would repeat epoch 0's order."""
        return self

    def _batches(self) -> list[list[int]]:
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(len(self.lengths))
        else:
            order = np.arange(len(self.lengths))
        pool = 50 * self.batch_size
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            np.random.default_rng(self.seed + self.epoch + 1).shuffle(batches)
        if self.even:
            batches = batches[:len(batches) // self.world * self.world] or batches[:1] * self.world
        return batches[self.rank::self.world]

    def __iter__(self):
        start, self.start = self.start, 0
        return iter(self._batches()[start:])

    def __len__(self) -> int:
        return len(self._batches())


class ResumableLoader(DataLoader):
    """A training DataLoader that Lightning can resume mid-epoch (it has ``state_dict``/``load_state_dict``).

    It counts the batches it has handed out in the current pass; a checkpoint stores that count with the
    sampler's epoch, and after a restore the next pass over that same epoch starts after them. The batch
    order is a function of seed and epoch, so the batches skipped are exactly those the interrupted run
    trained on. (With a plain DataLoader, Lightning would replay the epoch from its first batch.)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served, self.resume_at = 0, None  # resume_at: {"epoch", "served"} from a checkpoint

    def __iter__(self):  # a generator: it reads the epoch at the first batch, after Lightning's set_epoch
        epoch, resume, self.resume_at = self.batch_sampler.epoch, self.resume_at, None
        self.served = resume["served"] if resume and resume["epoch"] == epoch else 0
        self.batch_sampler.start = self.served
        for batch in super().__iter__():
            self.served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.batch_sampler.epoch, "served": self.served}

    def load_state_dict(self, state: dict) -> None:
        self.resume_at = dict(state)


def collate(rolls: list[torch.Tensor], max_shift: int = 0) -> dict[str, torch.Tensor]:
    """Rolls ``(time_i, 88)`` -> ``{"x": (batch, time, 88) float, "mask": (batch, time) bool}``.

    ``max_shift > 0`` transposes each sequence by a random number of semitones in
    ``[-max_shift, max_shift]`` (notes pushed off the keyboard are dropped).
    """
    lengths = torch.tensor([len(r) for r in rolls])
    x = torch.zeros(len(rolls), int(lengths.max()), NUM_PITCHES)
    for i, r in enumerate(rolls):
        shift = int(torch.randint(-max_shift, max_shift + 1, ())) if max_shift else 0
        r = r.float()
        if shift > 0:
            x[i, :len(r), shift:] = r[:, :NUM_PITCHES - shift]
        elif shift < 0:
            x[i, :len(r), :shift] = r[:, -shift:]
        else:
            x[i, :len(r)] = r
    mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    return {"x": x, "mask": mask}


def empty_split_message(split: str, dataset: str, root: str | None, corpus: dict) -> str:
    """One line saying which split is empty and what would fill it."""
    if dataset != "folder":
        return f"the {split} split of {dataset} is empty"
    readable = sum(len(rolls) for rolls in corpus.values())
    if readable < len(SPLITS):
        return (f"the {split} split of folder is empty: {root} has {readable} readable "
                f"file{'s' * (readable != 1)}; a folder needs at least 3 (one each for train, valid and test)")
    return (f"the {split} split of folder is empty: put at least one file in {Path(root) / split}, "
            "or remove the train/ valid/ test/ subfolders to let a seeded split choose")


class PianorollDataModule(L.LightningDataModule):
    """Piano-roll corpora for sequence models.

    Args:
        dataset: bach (music21's chorales, no download), jsb, nottingham, musedata, piano-midi (the
            Boulanger-Lewandowski 2012 benchmarks) or folder (any folder or .zip of MIDI/ABC/MusicXML).
        root: for the benchmarks, the folder holding ``<Name>.pickle`` (downloaded into ``data_dir``
            when omitted); for folder, the folder or .zip itself.
        data_dir: where downloads and the parse cache go.
        batch_size: sequences per batch.
        frames_per_beat: frames per quarter note for bach and folder (the benchmarks are fixed).
        fs: fixed frames per second for MIDI folders instead of beat-aligned frames.
        transpose_to_c: move each bach/folder piece to C major / C minor, as the benchmarks are.
        sample_at: bach/folder frames hold the notes sounding at the instant ``frame + sample_at`` (1.5,
            with frames_per_beat 2, gives the benchmark's own rolls from Nottingham's or Piano-midi.de's
            MIDI); unset, onsets and offsets are rounded to the nearest frame and no note vanishes.
        chunk_len: cut training sequences into independent chunks of this many frames.
        augment_transpose: transpose training sequences by up to this many semitones at random.
        seed: seed of the split (folder without split subfolders, bach) and of the batch order.
        num_workers: DataLoader worker processes (the data is in memory; 0 is usually fastest).
    """

    def __init__(self, dataset: str = "bach", root: str | None = None, data_dir: str = "data",
                 batch_size: int = 16, frames_per_beat: int = FRAMES_PER_BEAT, fs: float | None = None,
                 transpose_to_c: bool = True, chunk_len: int | None = None, augment_transpose: int = 0,
                 seed: int = 0, num_workers: int = 0, sample_at: float | None = None):
        super().__init__()
        if dataset not in DATASETS:
            raise CorpusError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        for name, value in [("batch_size", batch_size), ("frames_per_beat", frames_per_beat),
                            ("chunk_len", chunk_len or 1), ("fs", fs or 1)]:
            if value <= 0:
                raise CorpusError(f"{name} must be positive, got {value}")
        if sample_at is not None and not 0 <= sample_at < 1e6:
            raise CorpusError(f"sample_at must be a number of frames from 0, got {sample_at}")
        if root is not None and not Path(root).exists():  # said now, before any training is set up
            raise CorpusError(f"root {root} does not exist")
        self.save_hyperparameters()
        self.splits: dict[str, list[torch.Tensor]] | None = None

    @classmethod
    def from_settings(cls, settings: dict) -> "PianorollDataModule":
        """The data module a checkpoint's data settings describe (nothing loaded yet); keys that are not
        arguments (e.g. LightningCLI's ``_instantiator``) are left out."""
        known = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in settings.items() if k in known and k != "self"})

    @property
    def frames_per_beat(self) -> int:
        """Frames per quarter note of this corpus (what generation plays samples back at)."""
        return frames_per_beat_of(self.hparams)

    def load(self) -> dict[str, list[np.ndarray]]:
        h = self.hparams
        return load_corpus(h.dataset, h.root, h.data_dir, h.frames_per_beat, h.fs, h.transpose_to_c, h.seed,
                           h.sample_at)

    def prepare_data(self) -> None:  # once per machine: download and parse into the cache
        self.load()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        corpus = self.load()
        self.splits = {s: [torch.from_numpy(r) for r in corpus[s] if len(r)] for s in SPLITS}
        for s in SPLITS:
            if not self.splits[s]:
                raise CorpusError(empty_split_message(s, self.hparams.dataset, self.hparams.root, corpus))
        if self.hparams.chunk_len:
            k = self.hparams.chunk_len
            self.splits["train"] = [c for r in self.splits["train"] for c in torch.split(r, k)]

    def _loader(self, split: str, train: bool) -> DataLoader:
        rolls = self.splits[split]
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = BucketBatchSampler([len(r) for r in rolls], self.hparams.batch_size, shuffle=train,
                                     seed=self.hparams.seed, rank=rank, world=world, even=train)
        shift = self.hparams.augment_transpose if train else 0
        return (ResumableLoader if train else DataLoader)(
            rolls, batch_sampler=sampler, num_workers=self.hparams.num_workers,
            collate_fn=partial(collate, max_shift=shift), persistent_workers=self.hparams.num_workers > 0,
            # Each new iterator draws a worker seed; from its own generator, not the global RNG that
            # dropout uses, so where an epoch starts (fresh or resumed) does not shift the masks.
            generator=torch.Generator().manual_seed(self.hparams.seed))

    def train_dataloader(self):
        return self._loader("train", True)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split in evaluation order: no shuffling, no transposition, every batch."""
        return self._loader(split, False)

    def val_dataloader(self):
        return self._loader("valid", False)

    def test_dataloader(self):
        return self._loader("test", False)

    def statistics(self) -> dict[str, dict]:
        """Per split: ``sequences`` and ``pianoroll.rolls_to_stats`` (frames, notes, polyphony, pitch range)."""
        return {s: {"sequences": len(rolls), **rolls_to_stats(rolls)} for s, rolls in self.load().items()}


def run(argv: list[str]) -> int:
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    p = ArgumentParser(prog="python -m musicrnn.data", description="Print a corpus's statistics, or with "
                       "'compare' a MIDI folder's agreement with a benchmark (compare --help).")
    p.add_argument("dataset", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--root", help="folder holding '<Name>.pickle' (benchmarks) or the MIDI folder/.zip")
    p.add_argument("--data-dir", default="data", help="downloads and parse cache (default: data)")
    p.add_argument("--frames-per-beat", type=int, default=FRAMES_PER_BEAT)
    p.add_argument("--sample-at", type=float, help="frames hold the notes sounding at frame + this (1.5: the "
                                                   "benchmark's rule); default: onsets and offsets rounded")
    args = p.parse_args(argv)
    dm = PianorollDataModule(args.dataset, args.root, args.data_dir, frames_per_beat=args.frames_per_beat,
                             sample_at=args.sample_at)
    stats = dm.statistics()
    print(f"{'split':<6} {'sequences':>9} {'frames':>9} {'notes':>9} {'polyphony':>9} {'pitches':>9}")
    for s, st in stats.items():
        pitches = f"{st['pitch_min']:>4}-{st['pitch_max']}" if st["pitch_min"] is not None else f"{'-':>9}"
        print(f"{s:<6} {st['sequences']:>9} {st['frames']:>9} {st['notes']:>9} "
              f"{st['mean_polyphony']:>9.2f} {pitches}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
