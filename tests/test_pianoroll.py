import ast
import pickle
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from conftest import scale_piece, write_midi
from musicrnn import generate
from musicrnn.data import PianorollDataModule
from musicrnn.pianoroll import (NUM_PITCHES, PITCH_LO, PianorollError, estimate_tonic, file_to_roll, key_shift,
                                midi_to_roll, notes_to_roll, roll_to_midi, roll_to_onsets, rolls_to_stats,
                                seconds_to_quarters)


def test_beat_aligned_roll_has_the_written_notes(tmp_path):
    path = write_midi(tmp_path / "a.mid", [(60, 0, 1), (64, 1, 3), (67, 1, 2)], bpm=90)
    roll, dropped = file_to_roll(path, frames_per_beat=2)
    assert dropped == 0
    expected = np.zeros((6, 88), np.uint8)
    expected[0:2, 60 - 21] = 1
    expected[2:6, 64 - 21] = 1
    expected[2:4, 67 - 21] = 1
    np.testing.assert_array_equal(roll, expected)


def test_tempo_change_keeps_frames_on_the_beat():
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    # Tempo 120 for the first 2 s (4 quarters) then 60: a quarter lasts 0.5 s, then 1 s.
    pm._tick_scales.append((pm.time_to_tick(2.0), 60.0 / (60.0 * pm.resolution)))
    pm._update_tick_to_time(pm.time_to_tick(10.0))
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 60, 1.5, 2.0), pretty_midi.Note(80, 62, 2.0, 3.0)]
    pm.instruments.append(inst)
    roll, _ = midi_to_roll(pm, frames_per_beat=1)
    assert roll[3, 60 - 21] == 1 and roll[4, 62 - 21] == 1 and roll.shape[0] == 5


def test_seconds_to_quarters_piecewise():
    q = seconds_to_quarters(np.array([0.0, 1.0, 2.0, 4.0]), np.array([0.0, 2.0]), np.array([120.0, 60.0]))
    np.testing.assert_allclose(q, [0, 2, 4, 6])


def test_fixed_rate_drums_and_range(tmp_path):
    path = write_midi(tmp_path / "b.mid", [(60, 0, 1), (10, 0, 1), (120, 0, 1)], bpm=120,
                      drums=[(36, 0, 4)])
    roll, dropped = file_to_roll(path, fs=4)  # 1 beat = 0.5 s = 2 frames
    assert dropped == 2
    assert roll.shape == (2, 88) and roll[:, 60 - 21].all() and roll.sum() == 2


def test_transpose_from_key_signature(tmp_path):
    path = write_midi(tmp_path / "d.mid", scale_piece(offset=2), key_number=2)  # D major
    roll, _ = file_to_roll(path, transpose_to_c=True)
    plain, _ = file_to_roll(path)
    np.testing.assert_array_equal(roll[:, :-2], plain[:, 2:])  # down a whole tone


def test_transpose_estimated_without_key_signature(tmp_path):
    path = write_midi(tmp_path / "g.mid", scale_piece(offset=7))  # G major, no key signature
    roll, _ = file_to_roll(path, transpose_to_c=True)
    c_major, _ = file_to_roll(write_midi(tmp_path / "c.mid", scale_piece(offset=0)))
    np.testing.assert_array_equal(roll, np.roll(c_major, 12, axis=1))  # G -> C is +5: an octave above -7


def test_key_shift_smallest_interval():
    assert [key_shift(pc) for pc in range(12)] == [0, -1, -2, -3, -4, -5, 6, 5, 4, 3, 2, 1]


def test_roll_midi_round_trip_merges_held_notes(tmp_path):
    rng = np.random.default_rng(0)
    roll = (rng.random((40, 88)) < 0.08).astype(np.uint8)
    roll[5:15, 40] = 1  # one held note of 10 frames
    roll[15, 40] = 0
    pm = roll_to_midi(roll, frames_per_beat=2, bpm=100, program=0)
    held = [n for n in pm.instruments[0].notes if n.pitch == 61 and abs(n.start - 5 * 0.3) < 1e-6]
    assert len(held) == 1 and held[0].end == pytest.approx(15 * 0.3)
    pm.write(str(tmp_path / "r.mid"))
    back, _ = file_to_roll(tmp_path / "r.mid", frames_per_beat=2)
    np.testing.assert_array_equal(back, roll[:len(back)])
    assert not roll[len(back):].any()


def test_music21_formats(tmp_path):
    abc = tmp_path / "tune.abc"
    abc.write_text("X:1\nT:t\nM:4/4\nL:1/4\nK:C\nC D E F | G2 G2 |]\n")
    roll, _ = file_to_roll(abc, frames_per_beat=1)
    assert roll.shape == (8, 88)
    assert [int(np.flatnonzero(f)[0]) + 21 for f in roll] == [60, 62, 64, 65, 67, 67, 67, 67]


def test_unreadable_and_empty_files_raise_the_documented_error(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(PianorollError, match="bad.mid"):
        file_to_roll(bad)
    empty = write_midi(tmp_path / "empty.mid", [])
    with pytest.raises(PianorollError, match="no notes"):
        file_to_roll(empty)


# ---- piano-roll facts, defined once in pianoroll.py
def hand_made_roll():
    """6 frames: C4 held 3 frames (1 note, 3 cells), then C4 struck again with E4: 3 notes, 5 cells."""
    roll = np.zeros((6, NUM_PITCHES), dtype=np.uint8)
    roll[0:3, 60 - PITCH_LO] = 1
    roll[4, 60 - PITCH_LO] = roll[4, 64 - PITCH_LO] = 1
    return roll


def test_notes_are_onsets_not_active_cells():
    roll = hand_made_roll()
    onsets = np.zeros_like(roll, dtype=bool)
    onsets[0, 60 - PITCH_LO] = onsets[4, 60 - PITCH_LO] = onsets[4, 64 - PITCH_LO] = True
    np.testing.assert_array_equal(roll_to_onsets(roll), onsets)
    s = rolls_to_stats([roll])
    assert s == {"frames": 6, "notes": 3, "mean_polyphony": 5 / 6, "pitch_min": 60, "pitch_max": 64,
                 "empty": 2 / 6}
    assert len(roll_to_midi(roll).instruments[0].notes) == s["notes"]  # as many as the MIDI file holds


def test_data_statistics_and_sample_table_count_alike(tmp_path):
    frames = [(60,), (60,), (60, 62), (), (60,)]  # the hand-made kind: 3 onsets, 5 cells
    piece = [list(f) for f in frames]
    (tmp_path / "JSB Chorales.pickle").write_bytes(pickle.dumps({s: [piece] for s in ("train", "valid", "test")}))
    stats = PianorollDataModule("jsb", str(tmp_path), str(tmp_path / "cache")).statistics()["train"]
    assert stats["notes"] == 3 and stats["mean_polyphony"] == 5 / 5 and stats["sequences"] == 1
    assert generate.rolls_to_stats is rolls_to_stats


def test_pitch_range_is_written_once():
    """No literal 88 or 21 in the package's code outside pianoroll.py: they are NUM_PITCHES and PITCH_LO."""
    root = Path(__file__).resolve().parents[1] / "musicrnn"
    found = [f"{p.name}:{n.lineno}" for p in root.rglob("*.py") if p.name != "pianoroll.py"
             for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Constant) and type(n.value) is int and n.value in (NUM_PITCHES, PITCH_LO)]
    assert found == []


A_MINOR = [(69, 0, 1), (71, 1, 2), (72, 2, 3), (74, 3, 4), (76, 4, 6), (72, 6, 7), (68, 7, 8), (69, 8, 12),
           (45, 0, 12), (52, 4, 8)]  # melody with its leading tone G#, over A and E in the bass


@pytest.mark.parametrize("notes, key_number, shift", [
    (A_MINOR, 0, 3),               # A minor written with C major's signature: up a minor third to C minor
    (A_MINOR, None, 3),            # no signature at all
    (scale_piece(offset=2), 11, -2),  # D major with a B major signature: the notes decide
    ([(p + 5, s, e) for p, s, e in A_MINOR], 5, -2),  # D minor with F major's signature: down a tone
])
def test_key_from_the_notes_not_the_signature(tmp_path, notes, key_number, shift):
    path = write_midi(tmp_path / "k.mid", notes, key_number=key_number)
    roll, _ = file_to_roll(path, frames_per_beat=1, transpose_to_c=True)
    plain, _ = file_to_roll(path, frames_per_beat=1)
    np.testing.assert_array_equal(roll, np.roll(plain, shift, axis=1))
    assert plain.sum() == roll.sum()  # nothing pushed off the keyboard


def test_estimate_tonic_profiles():
    c_major_chord = np.array([60, 64, 67])
    assert estimate_tonic(c_major_chord + 7, np.ones(3)) == 7
    assert estimate_tonic(np.array([57, 60, 64]), np.array([4.0, 1, 1])) == 9  # A held under C E: A minor
    assert estimate_tonic(np.arange(60, 72), np.ones(12)) == 0  # no pitch class stands out: C, by rule


def test_benchmark_sampling_keeps_the_notes_sounding_mid_frame():
    # (start, end) in frames; frame k holds the notes with start < k + 1.5 <= end
    starts, ends = np.array([0, 1, 2.2, 3, 5.6]), np.array([1, 3, 2.4, 4.5, 5.9])
    roll, dropped = notes_to_roll(starts, ends, np.array([60, 62, 64, 65, 67]), sample_at=1.5)
    expected = np.zeros((5, 88), np.uint8)  # the piece lasts past the instant 5.5 of frame 4
    expected[0:2, 62 - 21] = 1  # instants 1.5 and 2.5; the note in frame 0 is before the first instant
    expected[2:4, 65 - 21] = 1  # instants 3.5 and 4.5: the end counts, the start does not
    np.testing.assert_array_equal(roll, expected)  # 64 and 67 fall between two instants
    assert dropped == 0
