"""Hostile inputs to the loaders: a bounded hypothesis run of scripts/fuzz_midi.py's mutations, and the
specific cases (code in pickles, XML entity tricks, time and memory limits) one by one."""

import pickle
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicrnn.corpora import CorpusError, load_benchmark_pickle, load_folder
from musicrnn.pianoroll import MAX_FRAMES, PianorollError, file_to_roll
from scripts import fuzz_midi

SEEDS = fuzz_midi.seed_midis()


def outcome(path, **kw) -> str:
    """'roll' or 'error'; anything else fails the test."""
    try:
        roll, _ = file_to_roll(path, seconds=5, **kw)
    except PianorollError:
        return "error"
    assert roll.dtype == np.uint8 and roll.shape[1] == 88 and len(roll) <= MAX_FRAMES
    return "roll"


def test_seeds_are_valid(tmp_path):
    for i, data in enumerate(SEEDS):
        (tmp_path / f"{i}.mid").write_bytes(data)
        assert outcome(tmp_path / f"{i}.mid") == "roll"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False), fs=st.sampled_from([None, 4.0, 1000.0]))
def test_mutated_midi_gives_a_roll_or_a_pianoroll_error(tmp_path, rng, fs):
    data, _ = fuzz_midi.mutate_midi(rng, SEEDS)
    (tmp_path / "x.mid").write_bytes(data)
    outcome(tmp_path / "x.mid", fs=fs)


@pytest.mark.parametrize("mutation, message", [
    (fuzz_midi.m_type2, "type 2"), (lambda rng, h, t, lengths, o: lengths.update({0: 0xFFFFFFFF}), "cannot be read"),
    (lambda rng, h, t, lengths, o: t.__setitem__(0, fuzz_midi.vlq(0x0FFFFFFF) + fuzz_midi.NOTE + t[0]), "likely corrupt"),
    # the slowest tempo there is (16.8 s a beat), and a note 10**5 ticks in: days at fs=1000
    (lambda rng, h, t, lengths, o: t.__setitem__(0, b"\x01\xff\x51\x03\xff\xff\xff" + fuzz_midi.vlq(10**5)
                                                  + fuzz_midi.NOTE + b"\x01\x80\x3c\x00" + t[0]), "over the limit of 100000"),
])
def test_specific_midi_damage(tmp_path, mutation, message):
    header, tracks = fuzz_midi.split_midi(SEEDS[1])
    lengths = {}
    mutation(None, header, tracks, lengths, SEEDS)
    (tmp_path / "x.mid").write_bytes(fuzz_midi.join_midi(header, tracks, lengths))
    with pytest.raises(PianorollError, match=message):
        file_to_roll(tmp_path / "x.mid", fs=1000.0 if "100000" in message else None)


def test_a_slow_file_meets_the_time_limit(tmp_path):
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack(mido.Message("note_on", note=60, velocity=i % 2 * 64, time=1)
                                     for i in range(100_000)))
    mid.save(tmp_path / "long.mid")
    start = time.monotonic()
    with pytest.raises(PianorollError, match="gave up after 0.05 s"):
        file_to_roll(tmp_path / "long.mid", seconds=0.05)
    assert time.monotonic() - start < 1


def test_the_memory_cap_turns_a_huge_allocation_into_memory_error():
    code = ("from musicrnn.corpora import limit_memory\nlimit_memory(256 << 20)\n"
            "try:\n    bytearray(1 << 30)\nexcept MemoryError:\n    print('refused')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "refused"


def test_folder_keeps_good_files_and_skips_bad_ones(tmp_path):
    (tmp_path / "good.mid").write_bytes(SEEDS[0])
    (tmp_path / "cut.mid").write_bytes(SEEDS[0][:30])
    (tmp_path / "type2.mid").write_bytes(SEEDS[1][:8] + b"\x00\x02" + SEEDS[1][10:])
    (tmp_path / "tune.abc").write_text(fuzz_midi.ABC_SEED)
    warnings = []
    corpus = load_folder(str(tmp_path), 1, None, False, 0, warn=warnings.append, workers=1)
    assert sum(len(v) for v in corpus.values()) == 2
    assert sum(w.startswith("warning: skipped") for w in warnings) == 2
    for name in ("good.mid", "tune.abc"):
        (tmp_path / name).unlink()
    with pytest.raises(CorpusError, match="none of the 2 files"):
        load_folder(str(tmp_path), 1, None, False, 0, warn=warnings.append, workers=1)


@pytest.mark.parametrize("mutation, suffix", [(4, ".musicxml"), (5, ".musicxml"), (6, ".musicxml"), (1, ".abc")])
def test_hostile_abc_and_musicxml(tmp_path, mutation, suffix):
    """Entity expansion, an external entity, deep nesting, an absurd unit length."""
    seed = fuzz_midi.XML_SEED if suffix == ".musicxml" else fuzz_midi.ABC_SEED
    text = fuzz_midi.TEXT_MUTATIONS[mutation](__import__("random").Random(0), seed)
    (tmp_path / f"x{suffix}").write_text(text)
    outcome(tmp_path / f"x{suffix}")
    if mutation == 5:  # the external entity was not read into the score
        with pytest.raises(PianorollError):
            file_to_roll(tmp_path / f"x{suffix}")


def test_valid_benchmark_pickle(tmp_path):
    corpus = {"train": [[(60, 64), (), {np.int64(21)}]], "valid": [[(108,)]], "test": [[[62, 65]]]}
    (tmp_path / "a.pickle").write_bytes(pickle.dumps(corpus, protocol=4))
    rolls = load_benchmark_pickle(tmp_path / "a.pickle")
    assert rolls["train"][0].shape == (3, 88) and rolls["train"][0][2, 0] == 1 and rolls["valid"][0][0, 87] == 1


@pytest.mark.parametrize("i", range(len(fuzz_midi.hostile_pickles(None))))
def test_hostile_benchmark_pickles_are_refused_and_run_nothing(tmp_path, i):
    canary = tmp_path / "payload-ran"
    obj = fuzz_midi.hostile_pickles(canary)[i]
    (tmp_path / "x.pickle").write_bytes(pickle.dumps(obj))
    with pytest.raises(CorpusError) as e:
        load_benchmark_pickle(tmp_path / "x.pickle")
    assert "\n" not in str(e.value)
    assert not canary.exists()


def test_memo_references_cannot_inflate_a_small_pickle(tmp_path):
    frame = tuple(range(21, 109))
    seq = [frame] * 200_000  # one frame pickled once, referenced 200k times: a 600 kB file
    (tmp_path / "x.pickle").write_bytes(pickle.dumps({"train": [seq] * 30, "valid": [], "test": []}))
    with pytest.raises(CorpusError, match="not a list of at most 100000 frames"):
        load_benchmark_pickle(tmp_path / "x.pickle")


def test_a_forged_numpy_dtype_cannot_crash_the_process(tmp_path):
    """Found by the fuzzer: one flipped bit turns ``i8`` into ``m8``, and numpy's own unpickling of that
    scalar segfaults. Run in a child process so a regression fails the test instead of killing pytest."""
    data = pickle.dumps({"train": [[(np.int64(60),)]], "valid": [], "test": []}, protocol=4)
    assert data.count(b"i8") == 1
    (tmp_path / "x.pickle").write_bytes(data.replace(b"i8", b"m8"))
    code = ("import sys\nfrom musicrnn.corpora import CorpusError, load_benchmark_pickle\n"
            "try:\n    load_benchmark_pickle(sys.argv[1])\nexcept CorpusError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.pickle")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "refused numpy dtype 'm8'" in done.stdout, done.stderr
