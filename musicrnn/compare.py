"""How closely the MIDI path reproduces a benchmark: transposition and frames, file by file.

``python -m musicrnn.data compare ROOT --benchmark PICKLE [--manifest CSV]``: ROOT is a folder or .zip
of MIDI files, PICKLE the benchmark (Boulanger-Lewandowski 2012) and the manifest a CSV naming, for each
file, the benchmark sequence it became and the transposition the benchmark applied.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from musicrnn.corpora import SPLITS, CorpusError, _parse_all, list_music_files, load_benchmark_pickle
from musicrnn.pianoroll import (BENCHMARK_SAMPLE_AT, MAX_FILE_BYTES, TIME_LIMIT_S, PianorollError,
                                check_midi_header, estimate_tonic, key_shift, midi_to_notes, notes_to_roll,
                                time_limit)

PATH_COLUMNS = ("path_in_zip", "path")  # the file's path inside ROOT, under either name
MANIFEST_COLUMNS = ("split", "seq_index", "transpose_semitones")
GOOD_JACCARD = 0.9


def read_manifest(path: str | Path) -> dict[str, dict]:
    """``{path inside ROOT: {"split", "seq_index", "shift"}}``; ``shift`` is None where the manifest
    leaves the transposition blank (a file it could not match)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CorpusError(f"manifest {path}: cannot be read ({e})") from None
    columns = set(rows[0]) if rows else set()
    key = next((c for c in PATH_COLUMNS if c in columns), None)
    if key is None or not set(MANIFEST_COLUMNS) <= columns:
        raise CorpusError(f"manifest {path}: needs the columns {PATH_COLUMNS[0]} (or path), "
                          f"{', '.join(MANIFEST_COLUMNS)}")
    out = {}
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            shift = row["transpose_semitones"].strip()
            if row["split"] not in SPLITS:
                raise ValueError(f"split {row['split']!r}")
            out[row[key]] = {"split": row["split"], "seq_index": int(row["seq_index"]),
                             "shift": int(shift) if shift else None}
        except (TypeError, ValueError) as e:
            raise CorpusError(f"manifest {path}, line {i}: not a valid row ({e})") from None
    return out


def frame_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Shared active cells over cells active in either of two rolls ``(time, 88)``; the shorter roll is
    padded with silence, so a length difference counts against the match."""
    length = max(len(a), len(b))
    x, y = np.zeros((2, length, a.shape[1]), dtype=bool)
    x[:len(a)], y[:len(b)] = a > 0, b > 0
    union = int((x | y).sum())
    return int((x & y).sum()) / union if union else 1.0


def compare_file(item: tuple, frames_per_beat: int) -> dict | PianorollError:
    """One MIDI file against its benchmark roll: the transposition chosen here and the frame Jaccard with
    it and with the benchmark's own. Failures are returned, so one bad file never stops the pool."""
    name, path, shift, bench = item
    try:
        import pretty_midi  # heavy (mido, its instrument tables): only where files are read, as in pianoroll

        if Path(path).stat().st_size > MAX_FILE_BYTES:
            raise PianorollError(f"over the limit of {MAX_FILE_BYTES >> 20} MiB")
        check_midi_header(Path(path))
        with time_limit(TIME_LIMIT_S), warnings.catch_warnings():
            # pretty_midi warns of tempo events outside the first track in most Nottingham files
            warnings.simplefilter("ignore", RuntimeWarning)
            starts, ends, pitches, seconds = midi_to_notes(pretty_midi.PrettyMIDI(str(path)), frames_per_beat)
    except PianorollError as e:
        return PianorollError(f"{name}: {e}")
    except Exception as e:  # parsers raise anything on bad bytes
        return PianorollError(f"{name}: cannot be read ({type(e).__name__}: {e})")
    ours = key_shift(estimate_tonic(pitches, seconds))

    def jaccard(semitones: int) -> float:
        roll, _ = notes_to_roll(starts, ends, pitches + semitones, sample_at=BENCHMARK_SAMPLE_AT)
        return frame_jaccard(roll, bench)

    return {"name": name, "ours": ours, "benchmark": shift, "jaccard": jaccard(ours),
            "jaccard_benchmark_shift": None if shift is None else jaccard(shift)}


def compare(root: str | Path, benchmark: str | Path, manifest: str | Path | None = None,
            frames_per_beat: int = 2, workers: int | None = None, warn=print) -> list[dict]:
    """Every manifest file under ``root`` against the benchmark: one dict per readable file."""
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"{root} does not exist")
    manifest = Path(manifest) if manifest else root.with_name(root.stem + "_manifest.csv")
    if not manifest.is_file():
        raise CorpusError(f"manifest {manifest} not found (pass --manifest)")
    entries = read_manifest(manifest)
    rolls = load_benchmark_pickle(benchmark)
    files, tmp = list_music_files(root)
    try:
        items = []
        for name, path in files:
            # a folder holds the zip's paths whole, or from below their first folder(s)
            entry = entries.get(name) or next((e for p, e in entries.items() if p.endswith("/" + name)), None)
            if entry is None:
                continue
            if entry["seq_index"] >= len(rolls[entry["split"]]):
                raise CorpusError(f"manifest {manifest}: {name} names {entry['split']} sequence "
                                  f"{entry['seq_index']}, but the benchmark has {len(rolls[entry['split']])}")
            items.append((name, str(path), entry["shift"], rolls[entry["split"]][entry["seq_index"]]))
        if not items:
            raise CorpusError(f"no file under {root} is named in {manifest}")
        results = _parse_all(partial(compare_file, frames_per_beat=frames_per_beat), items,
                             f"{len(items)} files in {root.name}", workers)
    finally:
        if tmp is not None:
            tmp.cleanup()
    out = []
    for r in results:
        if isinstance(r, Exception):
            warn(f"warning: skipped {r}")
        else:
            out.append(r)
    return out


def agreement(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """``(count, out of)`` for each figure the command prints; files whose benchmark transposition is
    unknown count only in the frame match with the transposition chosen here."""
    known = [r for r in rows if r["benchmark"] is not None]
    return {"transposition": (sum(r["ours"] == r["benchmark"] for r in known), len(known)),
            "frames": (sum(r["jaccard"] >= GOOD_JACCARD for r in rows), len(rows)),
            "frames_benchmark_shift": (sum(r["jaccard_benchmark_shift"] >= GOOD_JACCARD for r in known), len(known))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m musicrnn.data compare",
                                description="Agreement of the MIDI path with a benchmark's rolls.")
    p.add_argument("root", help="folder or .zip of MIDI files")
    p.add_argument("--benchmark", required=True, help="the benchmark pickle, e.g. 'Nottingham.pickle'")
    p.add_argument("--manifest", help="CSV: path_in_zip, split, seq_index, transpose_semitones "
                                      "(default: ROOT's name + '_manifest.csv' beside it)")
    p.add_argument("--frames-per-beat", type=int, default=2, help="2: eighth notes, as Nottingham and "
                                                                  "Piano-midi.de (default 2)")
    p.add_argument("--misses", action="store_true", help="also list each file that disagrees")
    args = p.parse_args(argv)
    try:
        if args.frames_per_beat <= 0:
            raise CorpusError(f"frames-per-beat must be positive, got {args.frames_per_beat}")
        rows = compare(args.root, args.benchmark, args.manifest, args.frames_per_beat)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.misses:
        for r in rows:
            if r["ours"] != r["benchmark"] or r["jaccard"] < GOOD_JACCARD:
                theirs = "unknown" if r["benchmark"] is None else f"{r['benchmark']:+d}"
                print(f"{r['name']}: transposition {r['ours']:+d} here, {theirs} in the benchmark; "
                      f"frame Jaccard {r['jaccard']:.3f}")
    labels = {"transposition": "transposition as the benchmark's",
              "frames": f"rolls with frame Jaccard >= {GOOD_JACCARD}",
              "frames_benchmark_shift": "  the same with the benchmark's transposition"}
    for key, (count, total) in agreement(rows).items():
        print(f"{labels[key]:<46} {count:>5} / {total:<5} {count / max(total, 1):7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
