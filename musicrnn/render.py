"""Pictures and sound of piano rolls and MIDI, as bytes (the caller decides where and how to write them).

- ``roll_to_png``: a roll ``(time, 88)`` drawn with matplotlib's Agg canvas, time on x, pitch on y.
- ``midi_to_wav``: a ``PrettyMIDI`` rendered by FluidSynth with a General MIDI SoundFont when both are
  installed (Debian: ``apt install fluidsynth fluid-soundfont-gm``), else by pretty_midi's own
  additive synthesis; always a 16-bit PCM WAV.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from musicrnn.errors import MusicrnnError
from musicrnn.pianoroll import NUM_PITCHES, PITCH_LO

SOUNDFONT_PATHS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
                   "/usr/share/soundfonts/FluidR3_GM.sf2", "/usr/share/soundfonts/default.sf2",
                   "/usr/share/sounds/sf2/TimGM6mb.sf2", "/opt/homebrew/share/soundfonts/default.sf2",
                   "/usr/local/share/soundfonts/default.sf2")


def roll_to_png(roll: np.ndarray, boundary: int | None = None, frames_per_beat: float = 1,
                title: str = "") -> bytes:
    """Roll ``(time, 88)`` -> PNG bytes: a dark cell where a pitch sounds, C of every octave named.

    ``boundary``: frame where a prime ends and the model's continuation begins, drawn as a red line.
    """
    # Heavy (about a second together): paid by the first drawing, not by every import of the module.
    import pretty_midi
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas by default

    roll = np.asarray(roll)
    width = float(np.clip(len(roll) / 24, 6, 40))
    fig = Figure(figsize=(width, 4.5), dpi=100)
    ax = fig.subplots()
    ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
              extent=(0, max(len(roll), 1), -0.5, NUM_PITCHES - 0.5))
    cs = [c for c in range(NUM_PITCHES) if (c + PITCH_LO) % 12 == 0]
    ax.set_yticks(cs, [pretty_midi.note_number_to_name(c + PITCH_LO) for c in cs])
    ax.set_xlabel(f"frame ({frames_per_beat:g} per beat)")
    ax.set_ylabel("pitch")
    if boundary:
        ax.axvline(boundary, color="red", linewidth=1.5)
        ax.text(boundary, NUM_PITCHES - 1, " prime | continuation ", color="red", ha="center", va="top",
                fontsize=8, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    if title:
        ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def find_soundfont() -> Path | None:
    """The first General MIDI SoundFont found in the usual system places, or None."""
    return next((Path(p) for p in SOUNDFONT_PATHS if Path(p).is_file()), None)


def wave_to_wav(samples: np.ndarray, rate: int) -> bytes:
    """Mono float waveform ``(n,)`` -> 16-bit PCM WAV bytes, scaled so the loudest sample is at 0.9."""
    samples = np.asarray(samples, dtype=np.float64)
    peak = np.abs(samples).max() if len(samples) else 0.0
    pcm = (samples * (0.9 / peak if peak > 0 else 0.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def midi_to_wav(pm, rate: int = 44100, soundfont: str | Path | None = None) -> tuple[bytes, str]:
    """``PrettyMIDI`` -> ``(WAV bytes, name of the synthesiser used)``.

    FluidSynth (the ``fluidsynth`` program) renders with ``soundfont`` or the first system GM SoundFont;
    without either, pretty_midi's sine synthesis does. Raises ``MusicrnnError`` if FluidSynth fails.
    """
    soundfont = Path(soundfont) if soundfont else find_soundfont()
    program = shutil.which("fluidsynth")
    if program is None or soundfont is None:
        return wave_to_wav(pm.synthesize(fs=rate), rate), "pretty_midi (sine waves)"
    with tempfile.TemporaryDirectory(prefix="musicrnn-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        pm.write(str(mid))
        cmd = [program, "-ni", "-q", "-g", "1.0", "-r", str(rate), "-T", "wav", "-F", str(wav), str(soundfont),
               str(mid)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not wav.is_file():
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise MusicrnnError(f"fluidsynth failed: {last}")
        return wav.read_bytes(), f"FluidSynth ({soundfont.name})"
