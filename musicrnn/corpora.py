"""Corpora as lists of piano rolls: the four benchmark pickles, music21's Bach chorales, any folder.

``load_corpus(...)`` returns ``{"train": [roll, ...], "valid": [...], "test": [...]}`` with every roll
a ``(time, 88)`` uint8 array. Parsed corpora are cached under ``<data_dir>/cache/`` as ``.npz`` files
(no pickle), keyed by every preprocessing parameter and the parser versions.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import tempfile
import urllib.request
import zipfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from musicrnn.atomic import atomic_write
from musicrnn.errors import MusicrnnError
from musicrnn.pianoroll import (FRAMES_PER_BEAT, MAX_FRAMES, MIDI_SUFFIXES, MUSIC21_SUFFIXES, NUM_PITCHES, PITCH_HI,
                                PITCH_LO, PianorollError, file_to_roll, score_to_roll)
from musicrnn.splits import SPLITS, split_names, split_of

BENCHMARKS = {"jsb": "JSB Chorales", "nottingham": "Nottingham", "musedata": "MuseData",
              "piano-midi": "Piano-midi.de"}
DATASETS = ("bach", *BENCHMARKS, "folder")
BENCHMARK_URL = "http://www-etud.iro.umontreal.ca/~boulanni/{}.pickle"
CACHE_VERSION = 3  # 2: small folders fill every split; 3: MIDI keys from the notes alone
# The published pickles are at most 4 MB and 400k frames. Memo references let a small pickle name the
# same frame millions of times, so the frames are counted, not just the bytes.
MAX_PICKLE_BYTES = 32 << 20
MAX_TOTAL_FRAMES = 4_000_000
MEMORY_HEADROOM = 2 << 30  # what one parsing worker may allocate beyond its size at start


class CorpusError(MusicrnnError):
    """A corpus that cannot be loaded: missing path, no readable file, malformed or hostile pickle."""


# ---------------------------------------------------------------- benchmark pickles
class _IntDtype:
    """An integer dtype named in a pickle. The pickle's BUILD state (the byte order) lands here, never in
    numpy's own ``dtype.__setstate__``, which a forged state crashes."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def __setstate__(self, state) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        if order not in ("<", ">", "|", "="):
            raise CorpusError(f"refused a numpy dtype with byte order {order!r}")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _numpy_dtype(name, align=False, copy=True) -> _IntDtype:
    """Stands in for ``numpy.dtype`` in benchmark pickles: integer types only."""
    if not (isinstance(name, str) and name in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")):
        raise CorpusError(f"refused numpy dtype {name!r}: a benchmark pickle holds only integers")
    return _IntDtype(np.dtype(name))


def _numpy_scalar(dtype, data=b"") -> int:
    """Stands in for ``numpy.core.multiarray.scalar``: numpy's own reads any dtype from raw bytes, and a
    pickle with one flipped bit (``i8`` -> ``m8``) makes it crash the process."""
    if isinstance(data, str):  # Python 2's str, decoded as latin-1
        data = data.encode("latin1")
    if not isinstance(dtype, _IntDtype) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise CorpusError("refused a numpy scalar that is not a well-formed integer")
    return int(np.frombuffer(data, dtype=dtype.dtype)[0])


class _BenchmarkUnpickler(pickle.Unpickler):
    """Admits only what the benchmark format holds: containers, ints and numpy integer scalars.

    Plain ``pickle.load`` would call any importable function named in the file; this refuses every
    global but sets and the numpy scalar/dtype constructors that the original Python 2 JSB pickle
    uses, and those two are replaced by checked stand-ins that accept integers only.
    """

    ALLOWED = {("numpy.core.multiarray", "scalar"): _numpy_scalar, ("numpy._core.multiarray", "scalar"): _numpy_scalar,
               ("numpy", "dtype"): _numpy_dtype, ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
               ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset}  # Python 2's names

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[module, name]
        raise CorpusError(f"refused to load {module}.{name}: a benchmark pickle holds only lists, "
                          "tuples and integers")


def sequence_to_roll(seq) -> np.ndarray:
    """One benchmark sequence (a list of frames, each a collection of MIDI pitches) -> roll ``(time, 88)``.

    Anything else (other types, pitches off the keyboard, absurd lengths) is a ``ValueError``.
    """
    if not isinstance(seq, (list, tuple)) or len(seq) > MAX_FRAMES:
        raise ValueError(f"not a list of at most {MAX_FRAMES} frames")
    roll = np.zeros((len(seq), NUM_PITCHES), dtype=np.uint8)
    for t, frame in enumerate(seq):
        if not isinstance(frame, (list, tuple, set, frozenset)) or len(frame) > NUM_PITCHES:
            raise ValueError(f"frame {t} is not a collection of at most {NUM_PITCHES} pitches")
        for p in frame:
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
                raise ValueError(f"frame {t} holds a {type(p).__name__}, not a MIDI pitch")
            if not PITCH_LO <= p <= PITCH_HI:
                raise ValueError(f"frame {t} holds pitch {p}, outside {PITCH_LO}..{PITCH_HI}")
            roll[t, int(p) - PITCH_LO] = 1
    return roll


def load_benchmark_pickle(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Read a Boulanger-Lewandowski pickle (split -> sequences -> frames -> MIDI pitches) safely."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_PICKLE_BYTES:
            raise CorpusError(f"over the limit of {MAX_PICKLE_BYTES >> 20} MiB for a benchmark pickle")
        # From memory, not the file: a forged length field then cannot make read() allocate gigabytes.
        data = _BenchmarkUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except CorpusError as e:
        raise CorpusError(f"{path}: {e}") from None
    except Exception as e:
        raise CorpusError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(s), list) for s in SPLITS):
        raise CorpusError(f"{path}: expected a dict with lists under 'train', 'valid' and 'test'")
    out, frames = {}, 0
    for split in SPLITS:
        rolls = []
        for i, seq in enumerate(data[split]):
            try:
                rolls.append(sequence_to_roll(seq))
            except ValueError as e:
                raise CorpusError(f"{path}: {split} sequence {i} is malformed ({e})") from None
            frames += len(rolls[-1])
            if frames > MAX_TOTAL_FRAMES:
                raise CorpusError(f"{path}: more than {MAX_TOTAL_FRAMES} frames in all; not a benchmark corpus")
        out[split] = rolls
    return out


def download(url: str, dest: Path) -> Path:
    """Fetch ``url`` into ``dest`` with a progress bar; the file appears complete or not at all."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn  # only when downloading

    def fetch(f):
        with urllib.request.urlopen(url, timeout=60) as r, \
                Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                         transient=True) as bar:
            task = bar.add_task(f"downloading {dest.name}", total=int(r.headers.get("Content-Length") or 0)
                                or None)
            while chunk := r.read(1 << 16):
                f.write(chunk)
                bar.advance(task, len(chunk))

    try:
        atomic_write(dest, fetch)
    except OSError as e:  # URLError is an OSError
        raise CorpusError(f"could not download {url} ({e}); put {dest.name} in a folder and pass it "
                          "as root") from None
    return dest


def benchmark_path(dataset: str, root: str | None, data_dir: Path) -> Path:
    """Where the pickle is: ``root/<Name>.pickle`` if given, else ``data_dir``, downloading it there."""
    name = BENCHMARKS[dataset] + ".pickle"
    if root is not None:
        path = Path(root) / name
        if not path.is_file():
            raise CorpusError(f"{path} not found (root must be the folder holding '{name}')")
        return path
    path = data_dir / name
    return path if path.is_file() else download(BENCHMARK_URL.format(urllib.request.quote(
        BENCHMARKS[dataset])), path)


# ---------------------------------------------------------------- files parsed in parallel
def _parse_chorale(name: str, frames_per_beat: int, transpose_to_c: bool, sample_at: float | None = None):
    from music21 import corpus  # heavy (seconds to import): only to parse the chorales

    try:
        return score_to_roll(corpus.parse(name, forceSource=True), frames_per_beat, transpose_to_c,
                             sample_at=sample_at)
    except Exception as e:  # a value, so one bad chorale never stops the pool
        return PianorollError(f"{name}: {e}")


def _parse_file(path: str, **kw):
    try:
        return file_to_roll(path, **kw)
    except PianorollError as e:
        return e  # a value, so one bad file never stops the pool


def limit_memory(headroom: int = MEMORY_HEADROOM) -> None:
    """Cap this process's address space at its present size plus ``headroom`` (Linux; elsewhere nothing).

    Run in each parsing worker: a hostile file that makes a parser build millions of objects then meets
    a ``MemoryError`` (reported as unreadable) instead of exhausting the machine.
    """
    import resource  # POSIX only: imported where the worker limits its memory

    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = size + headroom if hard == resource.RLIM_INFINITY else min(size + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _parse_all(func, items: list[str], what: str, workers: int | None = None) -> list:
    """``func`` over ``items`` in worker processes (each with a memory cap), in order, with a progress bar."""
    from rich.progress import Progress  # only when parsing files

    workers = workers or min(len(items), os.cpu_count() or 1)
    with Progress(*Progress.get_default_columns(), transient=True) as bar, \
            ProcessPoolExecutor(max_workers=workers, initializer=limit_memory) as pool:
        task = bar.add_task(f"parsing {what}", total=len(items))
        results = []
        for r in pool.map(func, items, chunksize=4):
            results.append(r)
            bar.advance(task)
    return results


def load_bach(frames_per_beat: int, transpose_to_c: bool, seed: int,
              sample_at: float | None = None) -> dict[str, list[np.ndarray]]:
    """The Bach chorales inside music21's wheel (371, Riemenschneider numbering)."""
    from music21 import corpus  # heavy (seconds to import): only to parse the chorales

    names = list(corpus.chorales.Iterator(returnType="filename"))
    rolls = _parse_all(partial(_parse_chorale, frames_per_beat=frames_per_beat, transpose_to_c=transpose_to_c,
                               sample_at=sample_at), names, "Bach chorales (music21)")
    out = {s: [] for s in SPLITS}
    for name, r in zip(names, rolls):
        if isinstance(r, Exception):
            print(f"warning: skipped {r}")
        else:
            out[split_of(name, seed)].append(r[0])
    return out


def list_music_files(root: Path) -> tuple[list[tuple[str, Path]], tempfile.TemporaryDirectory | None]:
    """``(name, path)`` of every MIDI / music21 file under a folder or inside a ``.zip``.

    Zip members are copied out under numbered names (never their own paths), so a member called
    ``../../x`` cannot write outside the temporary folder.
    """
    suffixes = MIDI_SUFFIXES + MUSIC21_SUFFIXES
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        return [(p.relative_to(root).as_posix(), p) for p in files], None
    if not zipfile.is_zipfile(root):
        raise CorpusError(f"{root} is neither a folder nor a .zip file")
    tmp = tempfile.TemporaryDirectory(prefix="musicrnn-")
    out = []
    with zipfile.ZipFile(root) as z:
        for i, info in enumerate(sorted(z.infolist(), key=lambda m: m.filename)):
            suffix = Path(info.filename).suffix.lower()
            if info.is_dir() or suffix not in suffixes or "__MACOSX" in info.filename:
                continue
            path = Path(tmp.name) / f"{i:06d}{suffix}"
            with z.open(info) as src, open(path, "wb") as dst:
                dst.write(src.read(256 << 20))  # no single member above 256 MiB
            out.append((info.filename, path))
    return out, tmp


def load_folder(root: str | None, frames_per_beat: int, fs: float | None, transpose_to_c: bool,
                seed: int, warn=print, workers: int | None = None,
                sample_at: float | None = None) -> dict[str, list[np.ndarray]]:
    """Every readable file under ``root``; ``train/ valid/ test/`` subfolders give the split if present.

    An unreadable file is skipped with one warning line; no readable file at all is an error.
    """
    if root is None:
        raise CorpusError("dataset 'folder' needs root: a folder or .zip of MIDI/ABC/MusicXML files")
    root_path = Path(root)
    if not root_path.exists():
        raise CorpusError(f"{root} does not exist")
    files, tmp = list_music_files(root_path)
    try:
        if not files:
            raise CorpusError(f"{root} holds no MIDI, ABC, MusicXML or Humdrum files")
        results = _parse_all(partial(_parse_file, frames_per_beat=frames_per_beat, fs=fs,
                                     transpose_to_c=transpose_to_c, sample_at=sample_at), [str(p) for _, p in files],
                             f"{len(files)} files in {root_path.name}", workers)
    finally:
        if tmp is not None:
            tmp.cleanup()
    named_split = any(set(Path(n).parts[:-1]) & set(SPLITS) for n, _ in files)
    readable = []
    for (name, _), r in zip(files, results):
        if isinstance(r, Exception):
            warn(f"warning: skipped {name}: {str(r).split(': ', 1)[-1]}")
        else:
            readable.append((name, r[0]))
    failed = len(files) - len(readable)
    if named_split:
        splits = [next(iter(set(Path(n).parts[:-1]) & set(SPLITS)), "train") for n, _ in readable]
    else:  # only the readable files are split, so a corrupt file never takes a split's only place
        splits = split_names([n for n, _ in readable], seed)
    out = {s: [] for s in SPLITS}
    for split, (_, roll) in zip(splits, readable):
        out[split].append(roll)
    if failed == len(files):
        raise CorpusError(f"none of the {len(files)} files in {root} could be read")
    if failed:
        warn(f"warning: {failed} of {len(files)} files in {root} could not be read and were skipped")
    return out


# ---------------------------------------------------------------- cache
def _versions() -> dict:
    """What keys the cache besides its inputs: the parsers' versions, read from the installed packages'
    metadata (importing music21 only to read its version takes a second; a missing parser reads None)."""
    return {"cache": CACHE_VERSION, "music21": _installed("music21"), "pretty_midi": _installed("pretty_midi")}


def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _source_stamp(dataset: str, root: str | None) -> list:
    """What identifies the input files: their names, sizes and modification times."""
    if dataset == "bach" or root is None:
        return []
    p = Path(root)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return [(str(q), q.stat().st_size, q.stat().st_mtime_ns) for q in files]


def _save_cache(path: Path, corpus: dict[str, list[np.ndarray]]) -> None:
    arrays = {}
    for s in SPLITS:
        rolls = corpus[s]
        arrays[f"{s}_lengths"] = np.array([len(r) for r in rolls], dtype=np.int64)
        arrays[f"{s}_frames"] = np.concatenate(rolls) if rolls else np.zeros((0, NUM_PITCHES), np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _load_cache(path: Path) -> dict[str, list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        return {s: np.split(z[f"{s}_frames"], np.cumsum(z[f"{s}_lengths"])[:-1]) if len(z[f"{s}_lengths"])
                else [] for s in SPLITS}


def load_corpus(dataset: str, root: str | None = None, data_dir: str | Path = "data",
                frames_per_beat: int = FRAMES_PER_BEAT, fs: float | None = None, transpose_to_c: bool = True,
                seed: int = 0, sample_at: float | None = None) -> dict[str, list[np.ndarray]]:
    """Load (or read from cache) a corpus as ``{split: [roll (time, 88) uint8, ...]}``.

    ``sample_at`` (bach, folder): see ``pianoroll.notes_to_roll``; None rounds onsets and offsets.
    """
    if dataset not in DATASETS:
        raise CorpusError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    data_dir = Path(data_dir)
    if dataset in BENCHMARKS:  # resolve (and download) first, so the stamp sees the real file
        root = str(benchmark_path(dataset, root, data_dir).parent)
        params = {"dataset": dataset}  # fixed preprocessing: the benchmark as published
    else:
        params = {"dataset": dataset, "frames_per_beat": frames_per_beat, "fs": fs,
                  "transpose_to_c": transpose_to_c, "seed": seed, "sample_at": sample_at}
    stamp = _source_stamp(dataset, root if dataset != "bach" else None)
    if dataset in BENCHMARKS:
        stamp = [s for s in stamp if Path(s[0]).name == BENCHMARKS[dataset] + ".pickle"]
    key = hashlib.sha256(json.dumps([params, stamp, _versions()], sort_keys=True).encode()).hexdigest()
    cache = data_dir / "cache" / f"{dataset}-{key[:16]}.npz"
    if cache.is_file():
        try:
            return _load_cache(cache)
        except Exception:
            pass  # a damaged cache is rebuilt below
    if dataset in BENCHMARKS:
        corpus = load_benchmark_pickle(Path(root) / (BENCHMARKS[dataset] + ".pickle"))
    elif dataset == "bach":
        corpus = load_bach(frames_per_beat, transpose_to_c, seed, sample_at)
    else:
        corpus = load_folder(root, frames_per_beat, fs, transpose_to_c, seed, sample_at=sample_at)
    _save_cache(cache, corpus)
    return corpus
