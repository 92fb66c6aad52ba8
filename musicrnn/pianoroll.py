"""Pure conversions between music files and binary piano rolls (no torch here).

A piano roll is a numpy ``uint8`` array of shape ``(time, 88)``: column ``c`` is MIDI pitch
``c + 21`` (A0 .. C8), ``roll[t, c] == 1`` while that pitch sounds in frame ``t``. pretty_midi's own
rolls are ``(128, time)`` with summed velocities; we never use them, so the conversion to
``(time, pitch)`` happens once, here.

Frames are either aligned to the score (``frames_per_beat`` frames per quarter note, following the
file's own tempo map) or taken at a fixed rate (``fs`` frames per second).
"""

from __future__ import annotations

import signal
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from musicrnn.errors import MusicrnnError

PITCH_LO, PITCH_HI = 21, 108  # A0, C8
NUM_PITCHES = PITCH_HI - PITCH_LO + 1  # 88
# Frames per quarter note unless told otherwise, everywhere (parsing, data module, playback): the
# quarter-note grid of the JSB Chorales benchmark.
FRAMES_PER_BEAT = 1
MIDI_SUFFIXES = (".mid", ".midi", ".kar")
MUSIC21_SUFFIXES = (".abc", ".mxl", ".musicxml", ".xml", ".krn")
MAX_FRAMES = 100_000  # longest roll we build: about 7 hours at 4 frames per second
# Parsers hold every event as a Python object (a few hundred bytes each), so a huge file is refused
# unread; real MIDI/ABC/MusicXML pieces are far below this.
MAX_FILE_BYTES = 8 << 20
TIME_LIMIT_S = 60.0  # per file; a hostile file can send a parser into a very long loop
# Temperley-Kostka-Payne key profiles (major, minor), tonic first: how much each scale degree sounds.
KEY_PROFILES = np.array([[0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400],
                         [0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330]])
# The benchmark's frame k is the instant k + 1.5 frames: the notes sounding in the middle of the next
# frame, so the first frame of each piece is left out. Measured on the MIDI of Nottingham and
# Piano-midi.de (eighth-note frames, the benchmark's own transposition): frame k + 1.5 gives frame
# Jaccard >= 0.9 for 1,037/1,037 and 123/123 files; rounding onsets and offsets to the nearest frame and
# dropping the first frame, 1,009 and 48; the instant k + 1 (a frame's start), 964 and 75.
BENCHMARK_SAMPLE_AT = 1.5


class PianorollError(MusicrnnError):
    """A file that cannot be turned into a piano roll (unreadable, empty, absurd length)."""


class _TimeUp(BaseException):
    """Raised by the alarm; a BaseException so parsers' own ``except Exception`` cannot swallow it."""


@contextmanager
def time_limit(seconds: float | None):
    """Interrupt the block after ``seconds`` with a ``PianorollError``.

    Uses SIGALRM, so it works in the main thread of a Unix process (the loader's worker processes,
    a script); elsewhere the block runs unlimited.
    """
    if not seconds or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, expire)
    # The alarm repeats: one that lands in a finalizer (``__del__`` during garbage collection) is
    # swallowed by Python, and the parse would run on unlimited.
    signal.setitimer(signal.ITIMER_REAL, seconds, max(seconds / 10, 0.01))
    try:
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimeUp:
        raise PianorollError(f"gave up after {seconds:g} s") from None
    finally:
        signal.signal(signal.SIGALRM, previous)


def notes_to_roll(
    starts: np.ndarray, ends: np.ndarray, pitches: np.ndarray, max_frames: int = MAX_FRAMES,
    sample_at: float | None = None,
) -> tuple[np.ndarray, int]:
    """Notes given in frame units -> ``(roll (time, 88) uint8, notes dropped as out of range)``.

    By default onsets and offsets are rounded to the nearest frame and a note shorter than one frame
    still gets one frame, so no note vanishes. With ``sample_at`` frame ``k`` instead holds the notes
    sounding at the instant ``k + sample_at`` (``start < k + sample_at <= end``); short notes between two
    instants vanish. ``BENCHMARK_SAMPLE_AT`` reproduces the benchmark's rolls.
    """
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    pitches = np.asarray(pitches, dtype=np.int64)
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()):
        raise PianorollError("note times are not finite")
    if sample_at is None:
        starts, ends = np.rint(starts), np.rint(ends)
    else:  # first and one past the last k with start < k + sample_at <= end; the tolerance absorbs the
        # rounding of times computed from seconds, so a note on the grid lands where its ticks put it
        starts = np.floor(starts - sample_at + 1e-6) + 1
        ends = np.floor(ends - sample_at + 1e-6) + 1
    inside = (pitches >= PITCH_LO) & (pitches <= PITCH_HI)
    dropped = int((~inside).sum())
    starts, ends, pitches = starts[inside], ends[inside], pitches[inside]
    starts = np.maximum(starts, 0)
    ends = np.maximum(ends, starts + 1 if sample_at is None else starts)  # a negative end would wrap around
    length = max(int(ends.max()), 0) if len(ends) else 0
    if length > max_frames:
        raise PianorollError(f"piece would be {length} frames long, over the limit of {max_frames}")
    roll = np.zeros((length, NUM_PITCHES), dtype=np.uint8)
    for s, e, p in zip(starts.astype(np.int64), ends.astype(np.int64), pitches):
        roll[s:e, p - PITCH_LO] = 1
    return roll, dropped


def seconds_to_quarters(times: np.ndarray, tempo_times: np.ndarray, qpm: np.ndarray) -> np.ndarray:
    """Seconds -> position in quarter notes under a piecewise-constant tempo map.

    ``tempo_times`` (n,) are the seconds at which each tempo ``qpm`` (n,) starts (the first at 0).
    """
    times = np.asarray(times, dtype=np.float64)
    if len(tempo_times) == 0:
        tempo_times, qpm = np.zeros(1), np.full(1, 120.0)
    rate = np.asarray(qpm, dtype=np.float64) / 60.0  # quarters per second in each segment
    # Quarter position at each tempo change, then linear within the segment.
    at_change = np.concatenate([[0.0], np.cumsum(np.diff(tempo_times) * rate[:-1])])
    seg = np.clip(np.searchsorted(tempo_times, times, side="right") - 1, 0, len(rate) - 1)
    return at_change[seg] + (times - tempo_times[seg]) * rate[seg]


def key_shift(tonic_pitch_class: int) -> int:
    """Semitones that move a tonic to C by the smallest interval, in -5..+6 (F# goes up)."""
    shift = (-int(tonic_pitch_class)) % 12
    return shift - 12 if shift > 6 else shift


def estimate_tonic(pitches: np.ndarray, durations: np.ndarray) -> int:
    """Tonic pitch class of the best-fitting of the 24 major/minor keys for the notes.

    The fit is the correlation of the duration-weighted pitch-class histogram with the Temperley-Kostka-
    Payne key profiles (Temperley 2007, as in music21's ``TemperleyKostkaPayne``), each rotated to every
    tonic. Measured against the transposition the benchmark applied (see the README), it agrees on
    1,021/1,037 Nottingham and 118/123 Piano-midi.de files; the files' first key signature agrees on
    935 and 69 (its mode flag is often wrong, and Nottingham's modal tunes carry the signature of their
    major scale), the Krumhansl-Schmuckler profiles on 918 and 96.
    """
    weight = np.bincount(np.asarray(pitches, dtype=np.int64) % 12, weights=durations, minlength=12)
    if np.ptp(weight) == 0:  # no pitch class stands out: correlations are undefined
        return 0
    profiles = np.stack([np.roll(KEY_PROFILES, tonic, axis=1) for tonic in range(12)], axis=1)  # (2, 12, 12)
    fit = np.array([[np.corrcoef(weight, p)[0, 1] for p in mode] for mode in profiles])  # (mode, tonic)
    return int(np.argmax(fit.max(axis=0)))


def midi_to_notes(pm, frames_per_beat: int | None = FRAMES_PER_BEAT, fs: float | None = None):
    """``pretty_midi.PrettyMIDI`` -> ``(starts, ends, pitches, seconds)`` of every non-drum note.

    ``starts`` and ``ends`` are in frames: ``fs`` per second, or else ``frames_per_beat`` per quarter note
    following the file's tempo changes; ``seconds`` are the notes' durations in seconds.
    """
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        raise PianorollError("no notes outside drum tracks")
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    pitches = np.array([n.pitch for n in notes])
    seconds = ends - starts
    if fs is not None:
        starts, ends = starts * fs, ends * fs
    else:
        tempo_times, qpm = pm.get_tempo_changes()
        if not (np.isfinite(qpm).all() and (qpm > 0).all()):
            raise PianorollError("the tempo map has non-positive or non-finite tempi")
        starts = seconds_to_quarters(starts, tempo_times, qpm) * frames_per_beat
        ends = seconds_to_quarters(ends, tempo_times, qpm) * frames_per_beat
    return starts, ends, pitches, seconds


def midi_to_roll(
    pm, frames_per_beat: int | None = FRAMES_PER_BEAT, fs: float | None = None, transpose_to_c: bool = False,
    max_frames: int = MAX_FRAMES, sample_at: float | None = None,
) -> tuple[np.ndarray, int]:
    """``pretty_midi.PrettyMIDI`` -> ``(roll (time, 88), notes dropped)``.

    All non-drum instruments are merged. With ``fs`` the frames are fixed-rate, otherwise there are
    ``frames_per_beat`` frames per quarter note following the file's tempo changes. With
    ``transpose_to_c`` the piece moves to C major / C minor by the smallest interval, the key estimated
    from the notes (``estimate_tonic``; key signatures are not used). ``sample_at``: see ``notes_to_roll``.
    """
    starts, ends, pitches, seconds = midi_to_notes(pm, frames_per_beat, fs)
    if transpose_to_c:
        pitches = pitches + key_shift(estimate_tonic(pitches, seconds))
    return notes_to_roll(starts, ends, pitches, max_frames, sample_at)


def score_to_roll(
    score, frames_per_beat: int = FRAMES_PER_BEAT, transpose_to_c: bool = False, max_frames: int = MAX_FRAMES,
    sample_at: float | None = None,
) -> tuple[np.ndarray, int]:
    """music21 ``Score``/``Stream`` -> ``(roll (time, 88), notes dropped)``; offsets are in quarters.

    Tied notes land in adjacent frames, so they merge by themselves; grace notes (no duration) are
    left out. With ``transpose_to_c`` the key comes from music21's key analysis of the score.
    ``sample_at``: see ``notes_to_roll``.
    """
    starts, ends, pitches = [], [], []
    for el in score.flatten().notes:
        length = float(el.quarterLength)
        if length <= 0:
            continue
        for p in el.pitches:
            starts.append(float(el.offset))
            ends.append(float(el.offset) + length)
            pitches.append(p.midi)
    if not pitches:
        raise PianorollError("no notes in the score")
    pitches = np.array(pitches)
    if transpose_to_c:
        pitches = pitches + key_shift(score.analyze("key").tonic.pitchClass)
    return notes_to_roll(np.array(starts) * frames_per_beat, np.array(ends) * frames_per_beat, pitches,
                         max_frames, sample_at)


def check_midi_header(path: Path) -> None:
    """Refuse type 2 files (independent tracks with no common timeline) before parsing."""
    with open(path, "rb") as f:
        head = f.read(14)
    if len(head) == 14 and head[:4] == b"MThd" and struct.unpack(">h", head[8:10])[0] == 2:
        raise PianorollError("type 2 MIDI files (independent sequences) are not supported")


def file_to_roll(
    path: str | Path, frames_per_beat: int = FRAMES_PER_BEAT, fs: float | None = None, transpose_to_c: bool = False,
    max_frames: int = MAX_FRAMES, seconds: float | None = TIME_LIMIT_S, sample_at: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read a MIDI file (pretty_midi) or an ABC / MusicXML / Humdrum file (music21) as a roll.

    Any failure to read, a file over ``MAX_FILE_BYTES`` or a parse longer than ``seconds`` becomes a
    ``PianorollError`` naming the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in MIDI_SUFFIXES + MUSIC21_SUFFIXES and path.stat().st_size > MAX_FILE_BYTES:
            raise PianorollError(f"over the limit of {MAX_FILE_BYTES >> 20} MiB")
        if suffix in MIDI_SUFFIXES:
            import pretty_midi  # heavy (mido, instrument tables): only where a MIDI file is read

            check_midi_header(path)
            with time_limit(seconds):  # pretty_midi refuses > 1e7 ticks before allocating its tick table
                return midi_to_roll(pretty_midi.PrettyMIDI(str(path)), frames_per_beat, fs, transpose_to_c,
                                    max_frames, sample_at)
        if suffix in MUSIC21_SUFFIXES:
            if fs is not None:
                raise PianorollError("fixed-rate frames need MIDI timing; use frames_per_beat")
            import music21  # heavy (seconds to import): only for ABC / MusicXML / Humdrum files

            with time_limit(seconds):
                score = music21.converter.parse(str(path), forceSource=True)
                return score_to_roll(score, frames_per_beat, transpose_to_c, max_frames, sample_at)
    except PianorollError as e:
        raise PianorollError(f"{path.name}: {e}") from None
    except MemoryError:  # the loader's workers run under a memory cap (corpora.limit_memory)
        raise PianorollError(f"{path.name}: needs more memory than allowed") from None
    except Exception as e:  # parsers raise anything from IndexError to struct.error on bad bytes
        raise PianorollError(f"{path.name}: cannot be read ({type(e).__name__}: {e})") from None
    raise PianorollError(f"{path.name}: unsupported file type {suffix!r}")


def roll_to_midi(
    roll: np.ndarray, frames_per_beat: int = FRAMES_PER_BEAT, bpm: float = 120.0, program: int = 0, velocity: int = 80
):
    """Roll ``(time, 88)`` -> ``pretty_midi.PrettyMIDI`` with one instrument.

    A pitch that stays on over consecutive frames becomes one held note (not re-struck each frame).
    """
    import pretty_midi  # heavy: only where a MIDI file is written

    roll = np.asarray(roll) > 0
    seconds_per_frame = 60.0 / bpm / frames_per_beat
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=program)
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll
    change = np.diff(padded, axis=0)  # +1 at an onset, -1 one past an offset
    for col in range(roll.shape[1]):
        on = np.flatnonzero(change[:, col] == 1)
        off = np.flatnonzero(change[:, col] == -1)
        for s, e in zip(on, off):
            inst.notes.append(pretty_midi.Note(velocity, col + PITCH_LO, s * seconds_per_frame,
                                               e * seconds_per_frame))
    inst.notes.sort(key=lambda n: (n.start, n.pitch))
    pm.instruments.append(inst)
    return pm


def roll_to_onsets(roll: np.ndarray) -> np.ndarray:
    """Roll ``(time, 88)`` -> ``(time, 88)`` bool, True where a note starts: the pitch sounds and did not
    in the frame before. A pitch held over several frames is one note, as ``roll_to_midi`` writes it."""
    on = np.asarray(roll) > 0
    return on & ~np.concatenate([np.zeros_like(on[:1]), on[:-1]])


def rolls_to_stats(rolls: list[np.ndarray]) -> dict:
    """Rolls ``[(time_i, 88), ...]`` -> what they hold, counted one way for every table of the project.

    ``frames``; ``notes``: onsets (``roll_to_onsets``); ``mean_polyphony``: sounding (frame, pitch)
    cells per frame; ``pitch_min``/``pitch_max``: lowest/highest MIDI pitch (None if silent);
    ``empty``: share of frames with no pitch.
    """
    frames = sum(len(r) for r in rolls)
    cells = sum(int((np.asarray(r) > 0).sum()) for r in rolls)
    notes = sum(int(roll_to_onsets(r).sum()) for r in rolls)
    empty = sum(int((~(np.asarray(r) > 0).any(1)).sum()) for r in rolls)
    used = np.flatnonzero(np.any([(np.asarray(r) > 0).any(0) for r in rolls], axis=0)) + PITCH_LO if rolls else []
    return {"frames": frames, "notes": notes, "mean_polyphony": cells / max(frames, 1),
            "pitch_min": int(used[0]) if len(used) else None, "pitch_max": int(used[-1]) if len(used) else None,
            "empty": empty / max(frames, 1)}
