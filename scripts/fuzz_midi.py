"""Fuzz the loaders with hostile files: every outcome must be a roll or the loader's documented error.

    python scripts/fuzz_midi.py --midi 10000 --music21 300 --pickles 2000

MIDI inputs are valid seed files (written here with mido, plus a few real ones read from
``../shared/data/midi/*.zip`` when present) put through structural mutations (absurd delta times and
tempos, zero-length, lying and huge tracks, running-status garbage, type 2 headers, absurd header
fields, spliced files) and byte mutations (truncation, flipped bits, random spans). Each goes to
``file_to_roll``; every ``--folder-every`` inputs the last batch also goes through ``load_folder``.
ABC / MusicXML inputs go through music21 the same way, and benchmark pickles (malformed structure,
bad pitches, code-running payloads, damaged bytes) through ``load_benchmark_pickle``.

Prints how many inputs were tried and how each ended; exits 1 if anything else happened (another
exception, a hang past the time limit, a payload that ran), saving those inputs. The process runs under
the memory cap the corpus loader gives its workers (``corpora.limit_memory``).
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import random
import re
import resource
import struct
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import mido
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
from musicrnn.corpora import CorpusError, limit_memory, load_benchmark_pickle, load_folder
from musicrnn.pianoroll import MAX_FRAMES, NUM_PITCHES, PITCH_HI, PITCH_LO, PianorollError, file_to_roll

SHARED_MIDI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "midi"


# ---------------------------------------------------------------- MIDI seeds and mutations
def vlq(n: int) -> bytes:
    """MIDI variable-length quantity (up to 4 bytes, 0x0FFFFFFF)."""
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def to_bytes(mid: mido.MidiFile) -> bytes:
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def seed_midis() -> list[bytes]:
    """A few small valid files: type 0 and 1, tempo changes, chords, drums, running status."""
    seeds = []
    for kind in range(3):
        mid = mido.MidiFile(type=0 if kind == 0 else 1, ticks_per_beat=(96, 480, 1)[kind])
        conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000),
                                    mido.MetaMessage("time_signature", numerator=3, denominator=4),
                                    mido.MetaMessage("key_signature", key="E")])
        conductor += [mido.MetaMessage("set_tempo", tempo=300000 + 100000 * i, time=mid.ticks_per_beat)
                      for i in range(kind * 3)]
        mid.tracks.append(conductor)
        track = conductor if kind == 0 else mido.MidiTrack()
        for i, chord in enumerate([(60, 64, 67), (62, 65, 69), (55, 59, 62, 67), (60, 64, 67, 72)]):
            channel = 9 if kind == 2 and i == 3 else 0  # a drum chord in one seed
            track += [mido.Message("note_on", note=p, velocity=80, channel=channel) for p in chord]
            track += [mido.Message("note_off", note=p, channel=channel, time=mid.ticks_per_beat if j == 0 else 0)
                      for j, p in enumerate(chord)]
        if kind:
            mid.tracks.append(track)
        seeds.append(to_bytes(mid))
    # Running status by hand: one 0x90 status byte, then bare (pitch, velocity) pairs.
    events = b"\x00\x90\x3c\x50" + b"".join(vlq(48) + bytes([p, 0]) + b"\x00" + bytes([p + 2, 80])
                                            for p in range(60, 72, 2)) + b"\x30\x48\x00\x00\xff\x2f\x00"
    seeds.append(b"MThd" + struct.pack(">Lhhh", 6, 0, 1, 96) + b"MTrk" + struct.pack(">L", len(events)) + events)
    return seeds


def real_midis(limit: int) -> list[bytes]:
    """Up to ``limit`` files from each zip in ../shared/data/midi (read in memory, never copied)."""
    out = []
    for z in sorted(SHARED_MIDI.glob("*.zip")):
        with zipfile.ZipFile(z) as f:
            names = sorted(n for n in f.namelist() if n.lower().endswith((".mid", ".midi")))
            out += [f.read(n) for n in names[::max(1, len(names) // limit)][:limit]]
    return out


def split_midi(data: bytes) -> tuple[list, list[bytes]]:
    """``([format, ntracks, division], [track data, ...])`` of a well-formed file."""
    fmt, ntracks, division = struct.unpack(">hhh", data[8:14])
    tracks, pos = [], 14
    while pos + 8 <= len(data):
        size = struct.unpack(">L", data[pos + 4:pos + 8])[0]
        tracks.append(data[pos + 8:pos + 8 + size])
        pos += 8 + size
    return [fmt, ntracks, division], tracks


def join_midi(header: list, tracks: list[bytes], lengths: dict | None = None) -> bytes:
    """Write a file; ``lengths`` may make some track headers lie about their size."""
    lengths = lengths or {}
    body = b"".join(b"MTrk" + struct.pack(">L", lengths.get(i, len(t)) & 0xFFFFFFFF) + t
                    for i, t in enumerate(tracks))
    return b"MThd" + struct.pack(">LHHH", 6, *(v & 0xFFFF for v in header)) + body


def at_track_start(rng, tracks, event: bytes) -> None:
    i = rng.randrange(len(tracks)) if tracks else 0
    if tracks:
        tracks[i] = event + tracks[i]


NOTE = b"\x90\x3c\x40"


def m_huge_delta(rng, header, tracks, lengths, others):
    delta = rng.choice([0x0FFFFFFF, 10**7, 10**7 + 1, 2**21, rng.randrange(2**28)])
    at_track_start(rng, tracks, vlq(delta) + NOTE + vlq(rng.randrange(2**28)) + b"\x80\x3c\x00")


def m_tempo(rng, header, tracks, lengths, others):
    tempo = rng.choice([0, 1, 2, 0xFFFFFF, rng.randrange(2**24)])
    at_track_start(rng, tracks, vlq(rng.choice([0, 1, 10**6])) + b"\xff\x51\x03" + tempo.to_bytes(3, "big"))


def m_zero_track(rng, header, tracks, lengths, others):
    tracks.insert(rng.randrange(len(tracks) + 1), b"")
    header[1] += rng.choice([0, 1])


def m_lying_length(rng, header, tracks, lengths, others):
    i = rng.randrange(len(tracks)) if tracks else 0
    lengths[i] = rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(2**32)])


def m_huge_track(rng, header, tracks, lengths, others):
    n = rng.choice([1000, 20_000, 100_000])
    note = bytes([0x90, rng.randrange(PITCH_LO, PITCH_HI + 1), 64])
    tracks.append(b"".join(vlq(rng.choice([0, 1])) + note for _ in range(n)) + b"\x00\xff\x2f\x00")
    header[1] += 1


def m_big_meta(rng, header, tracks, lengths, others):
    size = rng.choice([0x0FFFFFFF, 999_999, 1_000_001, 200_000])
    at_track_start(rng, tracks, b"\x00" + rng.choice([b"\xff\x01", b"\xf0"]) + vlq(size) + b"x" * min(size, 200_000))


def m_running_garbage(rng, header, tracks, lengths, others):
    garbage = bytes(rng.randrange(0x80) for _ in range(rng.randrange(1, 16)))
    if tracks and rng.random() < 0.5:
        i = rng.randrange(len(tracks))
        pos = rng.randrange(len(tracks[i]) + 1)
        tracks[i] = tracks[i][:pos] + garbage + tracks[i][pos:]
    else:  # data bytes before any status byte
        at_track_start(rng, tracks, b"\x00" + garbage)


def m_header(rng, header, tracks, lengths, others):
    i = rng.randrange(3)
    header[i] = rng.choice([0, 1, 2, -1, 3, 1000, 32767, -32768, (-25 << 8) | 40, rng.randrange(-32768, 32768)])


def m_type2(rng, header, tracks, lengths, others):
    header[0] = 2


def m_splice(rng, header, tracks, lengths, others):
    _, more = split_midi(rng.choice(others))
    tracks += more * rng.choice([1, 1, 50])
    header[1] = len(tracks)


STRUCTURAL = [m_huge_delta, m_tempo, m_zero_track, m_lying_length, m_huge_track, m_big_meta, m_running_garbage,
              m_header, m_type2, m_splice]
WEIGHTS = [4, 4, 2, 2, 0.3, 0.5, 4, 2, 1, 1]


def b_truncate(rng, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def b_flip(rng, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 9)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def b_random_span(rng, data: bytes) -> bytes:
    pos, n = rng.randrange(len(data) + 1), rng.randrange(1, 64)
    return data[:pos] + rng.randbytes(n) + data[pos + n:]


BYTEWISE = [b_truncate, b_flip, b_random_span]


def mutate_midi(rng: random.Random, seeds: list[bytes]) -> tuple[bytes, str]:
    """One mutated file and the names of the mutations applied."""
    seed = rng.choice(seeds)
    header, tracks = split_midi(seed)
    lengths, names = {}, []
    for m in rng.choices(STRUCTURAL, WEIGHTS, k=rng.choice([0, 1, 1, 2, 3])):
        m(rng, header, tracks, lengths, seeds)
        names.append(m.__name__)
    data = join_midi(header, tracks, lengths)
    for b in rng.sample(BYTEWISE, k=rng.choice([0, 0, 1, 1, 2])):
        data = b(rng, data)
        names.append(b.__name__)
    return data, "+".join(names) or "seed"


# ---------------------------------------------------------------- outcomes
def kind_of_error(message: str) -> str:
    """A short category of a documented error's message (the text after the file name)."""
    text = message.split(": ", 1)[-1]
    if m := re.match(r"cannot be read \((\w+)", text):
        return f"unreadable ({m.group(1)})"
    for pattern, kind in [(r"over the limit of \d+ MiB", "file too big"), (r"frames long", "roll too long"),
                          (r"gave up", "time limit"), (r"memory", "memory cap"), (r"type 2", "type 2"),
                          (r"no notes", "no notes"),
                          (r"tempo", "bad tempo"), (r"refused to load", "refused global"),
                          (r"malformed", "malformed sequence"), (r"not a readable pickle", "unreadable pickle"),
                          (r"expected a dict", "wrong structure")]:
        if re.search(pattern, text):
            return kind
    return " ".join(text.split()[:4])


class Tally:
    """Counts outcomes; saves the input of anything unexpected."""

    def __init__(self, save_dir: Path, seconds: float):
        self.counts, self.unexpected, self.slowest = collections.Counter(), 0, 0.0
        self.save_dir, self.seconds = save_dir, seconds

    def run(self, what: str, call, data: bytes, suffix: str, label: str, files: int = 1) -> None:
        """``call()`` on one input (or a folder of ``files``), within ``files`` time limits plus slack."""
        start = time.monotonic()
        try:
            result = call()
            outcome = f"{what}: parsed"
            if isinstance(result, tuple):
                roll = result[0]
                ok = roll.dtype == np.uint8 and roll.ndim == 2 and roll.shape[1] == NUM_PITCHES and len(roll) <= MAX_FRAMES
                outcome = f"{what}: roll" if ok else f"{what}: UNEXPECTED malformed roll"
        except (PianorollError, CorpusError) as e:
            outcome = f"{what}: {type(e).__name__}: {kind_of_error(str(e))}"
        except Exception as e:  # noqa: BLE001 (that is what we are looking for)
            outcome = f"{what}: UNEXPECTED {type(e).__name__}: {str(e)[:80]}"
        elapsed = time.monotonic() - start
        self.slowest = max(self.slowest, elapsed)
        if elapsed > files * self.seconds + 5:
            outcome = f"{what}: UNEXPECTED hang ({elapsed:.0f} s)"
        self.counts[outcome] += 1
        if "UNEXPECTED" in outcome:
            self.unexpected += 1
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / f"{self.unexpected:04d}-{label[:60]}{suffix}").write_bytes(data)
            print(f"unexpected: {outcome} ({label})", flush=True)


# ---------------------------------------------------------------- the three runs
def fuzz_midi(rng, n: int, tally: Tally, tmp: Path, folder_every: int, real: int) -> None:
    seeds = seed_midis() + real_midis(real)
    batch = []
    for i in range(n):
        data, label = mutate_midi(rng, seeds)
        path = tmp / "input.mid"
        path.write_bytes(data)
        kw = {"frames_per_beat": rng.choice([1, 2, 4]), "fs": rng.choice([None, None, 4.0, 1000.0]),
              "transpose_to_c": rng.random() < 0.1, "seconds": tally.seconds}
        tally.run("midi", lambda: file_to_roll(path, **kw), data, ".mid", label)
        batch.append(data)
        if folder_every and (i + 1) % folder_every == 0:
            fuzz_folder(batch[-40:], tally, tmp)
            batch = []
        if (i + 1) % 1000 == 0:
            print(f"... {i + 1} MIDI inputs", flush=True)


def fuzz_folder(files: list[bytes], tally: Tally, tmp: Path) -> None:
    """The same files through the corpus loader: it returns the readable ones or one CorpusError."""
    folder = tmp / "folder"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for j, data in enumerate(files):
        (folder / f"{j:03d}.mid").write_bytes(data)
    warnings = []

    def load():
        corpus = load_folder(str(folder), 1, None, False, 0, warn=warnings.append, workers=1)
        rolls = sum(len(v) for v in corpus.values())
        skipped = sum(w.startswith("warning: skipped") for w in warnings)
        if rolls + skipped != len(files):
            raise AssertionError(f"{rolls} rolls + {skipped} skipped != {len(files)} files")
        return corpus

    tally.run("folder", load, b"".join(files), ".mid-concatenated", "folder", len(files))


ABC_SEED = "X:1\nT:Seed\nM:4/4\nL:1/8\nK:G\n|:GABc dedB|dedB dedB|c2ec B2dB|[CEG]2 [DFA]2 A2BA:|\n"
XML_SEED = ('<?xml version="1.0"?>\n<score-partwise version="3.1"><part-list><score-part id="P1">'
            '<part-name>P</part-name></score-part></part-list><part id="P1"><measure number="1">'
            '<attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>'
            '<note><pitch><step>C</step><octave>4</octave></pitch><duration>2</duration></note>'
            '<note><chord/><pitch><step>E</step><octave>4</octave></pitch><duration>2</duration></note>'
            '<note><pitch><step>G</step><alter>1</alter><octave>4</octave></pitch><duration>2</duration></note>'
            '</measure></part></score-partwise>\n')
TEXT_MUTATIONS = [
    lambda rng, s: re.sub(r"\d+", lambda m: rng.choice(["0", "-1", "99999999999", "1e308", "nan"]), s, count=3),
    lambda rng, s: s.replace("L:1/8", "L:1/" + rng.choice(["0", "99999999", "-3"])),
    lambda rng, s: s.replace("|:", "|:" * rng.choice([100, 5000])),
    lambda rng, s: s.replace("GABc", "(9(9(9GABc" + "z99999999" * rng.choice([1, 50])),
    lambda rng, s: s.replace("<?xml version=\"1.0\"?>", '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">'
                             + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi"))
                             + ']>').replace("<part-name>P", "<part-name>&i;"),  # billion laughs
    lambda rng, s: s.replace("<?xml version=\"1.0\"?>", '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM '
                             '"file:///etc/passwd">]>').replace("<part-name>P", "<part-name>&x;"),
    lambda rng, s: s.replace("<measure number=\"1\">", "<measure number=\"1\">" + "<x>" * 50000 + "</x>" * 50000),
    lambda rng, s: s.replace("</measure>", "</measure>" + "<measure><note><rest/><duration>1</duration></note></measure>"
                             * rng.choice([1, 3000])),
]


def fuzz_music21(rng, n: int, tally: Tally, tmp: Path) -> None:
    for i in range(n):
        suffix, text = rng.choice([(".abc", ABC_SEED), (".musicxml", XML_SEED)])
        for m in rng.sample(TEXT_MUTATIONS, k=rng.choice([1, 1, 2])):
            text = m(rng, text)
        data = text.encode()
        for b in rng.sample(BYTEWISE, k=rng.choice([0, 1])):
            data = b(rng, data)
        path = tmp / f"input{suffix}"
        path.write_bytes(data)
        tally.run("music21", lambda: file_to_roll(path, frames_per_beat=rng.choice([1, 4]), seconds=tally.seconds),
                  data, suffix, f"music21-{i}")


class Payload:
    """A pickle that would run ``func(*args)`` on a plain ``pickle.load``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile_pickles(canary: Path) -> list:
    """Objects that are not a benchmark corpus, including ones that try to run code."""
    good = [[(60, 64), (62,), ()], [(PITCH_LO, PITCH_HI)]]
    bad_pitch = [60.0, "60", None, True, PITCH_LO - 1, PITCH_HI + 1, -1, 10**30, np.float64(60), [60], b"<"]
    out = [None, [], "train", {"train": good}, {"train": good, "valid": good, "test": "x"},
           {s: {"a": 1} for s in ("train", "valid", "test")}, {s: [["abc"]] for s in ("train", "valid", "test")},
           {s: [[60]] for s in ("train", "valid", "test")}, {s: [[tuple(range(PITCH_LO, PITCH_HI + 1)) * 2]] for s in ("train", "valid", "test")}]
    out += [{"train": [[(p,)]], "valid": good, "test": good} for p in bad_pitch]
    out += [{"train": good, "valid": good, "test": [Payload(*call)]} for call in [
        (open, str(canary), "w"), (os.system, f"touch {canary}"), (eval, f"open({str(canary)!r}, 'w')"),
        (exec, f"open({str(canary)!r}, 'w')"), (Path.touch, canary), (__import__("subprocess").call, ["touch", str(canary)])]]
    return out


def fuzz_pickles(rng, n: int, tally: Tally, tmp: Path) -> None:
    canary = tmp / "payload-ran"
    corpus = {s: [[tuple(rng.sample(range(PITCH_LO, PITCH_HI + 1), rng.randrange(4))) for _ in range(rng.randrange(1, 30))]
                  for _ in range(3)] for s in ("train", "valid", "test")}
    corpus["train"].append([{np.int64(60), np.int64(64)}])  # numpy scalars and sets, as in the old pickles
    seeds = [pickle.dumps(corpus, protocol=p) for p in range(6)]
    hostile = [pickle.dumps(obj, protocol=p) for obj in hostile_pickles(canary) for p in (0, 2, 5)]
    for i in range(n):
        data = hostile[i] if i < len(hostile) else rng.choice(seeds)
        if i >= len(hostile):
            for b in rng.sample(BYTEWISE, k=rng.choice([1, 1, 2])):
                data = b(rng, data)
        path = tmp / "JSB Chorales.pickle"
        path.write_bytes(data)
        tally.run("pickle", lambda: load_benchmark_pickle(path), data, ".pickle", f"pickle-{i}")
        if canary.exists():
            tally.counts["pickle: UNEXPECTED payload ran"] += 1
            tally.unexpected += 1
            canary.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--midi", type=int, default=10_000, help="MIDI inputs (default 10000)")
    p.add_argument("--music21", type=int, default=300, help="ABC / MusicXML inputs (default 300)")
    p.add_argument("--pickles", type=int, default=2000, help="benchmark pickle inputs (default 2000)")
    p.add_argument("--folder-every", type=int, default=500, help="also load the last 40 files as a folder")
    p.add_argument("--real", type=int, default=10, help="real seed files per zip in ../shared/data/midi")
    p.add_argument("--seconds", type=float, default=10.0, help="per-file time limit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default="fuzz-failures", help="folder for unexpected inputs")
    a = p.parse_args(argv)
    limit_memory()  # the cap the corpus loader puts on its workers
    rng, tally = random.Random(a.seed), Tally(Path(a.save), a.seconds)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        fuzz_midi(rng, a.midi, tally, Path(tmp), a.folder_every, a.real)
        fuzz_music21(rng, a.music21, tally, Path(tmp))
        fuzz_pickles(rng, a.pickles, tally, Path(tmp))
    total = sum(tally.counts.values())
    print(f"\n{total} inputs in {time.monotonic() - start:.0f} s (seed {a.seed}); slowest {tally.slowest:.1f} s; "
          f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    for outcome, count in sorted(tally.counts.items()):
        print(f"{count:>7}  {outcome}")
    print(f"{tally.unexpected} unexpected")
    return 1 if tally.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
