"""Demo music with exact ground truth: a short electronic track synthesised from a seed.

The bundled show needs music with no licence question, and the analyzer's tests need onsets and
beats whose times are known exactly, not annotated. `synth_track` renders four-on-the-floor
electronic music (a kick with a pitch drop, a noise-burst snare on 2 and 4, noise hats, a bass
line on the roots of a four-chord progression, a detuned-saw pad) and returns the audio with the
time of every beat, kick, snare and hat. `write_track` saves it as wav/flac/ogg.

Everything is deterministic for a given seed: the seed picks the progression, the hat and bass
patterns and the noise. Events sit exactly on the sixteenth-note grid (start sample =
round(t * rate)); the times returned are those start samples / rate.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from ..atomic import atomic_path
from ..data import default_cache_dir
from ..errors import UserError

# Chord roots as semitones above A (A=0); each chord is a triad, minor or major by `quality`.
PROGRESSIONS = (
    ((0, "m"), (8, ""), (3, ""), (10, "")),   # Am  F  C  G
    ((5, "m"), (1, ""), (8, ""), (3, "")),    # Dm  Bb F  C
    ((7, "m"), (3, ""), (10, ""), (5, "")),   # Em  C  G  D
    ((3, "m"), (11, ""), (6, ""), (1, "")),   # Cm  Ab Eb Bb
)
HAT_PATTERNS = (
    (2, 6, 10, 14),                           # off-beat eighths (sixteenth steps within a bar)
    tuple(range(0, 16, 2)),                   # straight eighths
    tuple(range(16)),                         # sixteenths
)
BASS_PATTERNS = (
    (2, 6, 10, 14),                           # off-beat eighths, the house pump
    (2, 3, 6, 7, 10, 11, 14, 15),             # rolling off-beat sixteenths
    (0, 3, 6, 8, 11, 14),                     # syncopated
)


@dataclass
class DemoTrack:
    """A synthesised track and its exact ground truth.

    audio: float32, shape (n,) mono or (n, 2) stereo, peak at -1 dBFS.
    sample_rate: Hz.  bpm: tempo in beats per minute.
    beats: every quarter-note time in seconds from 0, through breakdowns too (the grid goes on).
    kicks, snares, hats: start time in seconds of every hit actually played (none in breakdowns).
    """

    audio: np.ndarray
    sample_rate: int
    bpm: float
    beats: np.ndarray
    kicks: np.ndarray
    snares: np.ndarray
    hats: np.ndarray

    @property
    def duration_s(self):
        return len(self.audio) / self.sample_rate


def _kick(rate, rng):
    """A 0.35 s kick: sine whose pitch drops from ~160 Hz to 45 Hz in ~30 ms, plus a 2 ms beater
    click (noise low-passed at 3 kHz, as a kick's click sits below the hats)."""
    t = np.arange(int(0.35 * rate)) / rate
    freq = 45.0 + 115.0 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(freq) / rate
    body = np.sin(phase) * np.exp(-t / 0.16) * np.minimum(t / 0.001, 1.0)
    noise = sosfilt(butter(2, 3000, "lowpass", fs=rate, output="sos"), rng.standard_normal(len(t)))
    click = noise * np.exp(-t / 0.002) * 0.5
    return body + click


def _snare(rate, rng):
    """A 0.25 s snare: band-passed noise burst plus a 185 Hz tone body."""
    t = np.arange(int(0.25 * rate)) / rate
    noise = sosfilt(butter(2, (1200, 9000), "bandpass", fs=rate, output="sos"), rng.standard_normal(len(t)))
    return 0.9 * noise * np.exp(-t / 0.07) + 0.5 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)


def _hat(rate, rng, length_s=0.06):
    """A closed hat: high-passed noise with a ~20 ms decay."""
    t = np.arange(int(length_s * rate)) / rate
    noise = sosfilt(butter(4, 7000, "highpass", fs=rate, output="sos"), rng.standard_normal(len(t)))
    return noise * np.exp(-t / 0.02)


def _saw(freq_hz, n, rate, phase0=0.0):
    """Naive sawtooth in -1..1 (the pad and bass are low-passed, so aliasing stays inaudible)."""
    return 2.0 * ((phase0 + freq_hz * np.arange(n) / rate) % 1.0) - 1.0


def _add(out, start, sound):
    """Mix `sound` into `out` from sample `start`, cutting at the end of `out`."""
    end = min(len(out), start + len(sound))
    if end > start:
        out[start:end] += sound[: end - start]


def _chord_hz(root, quality, octave):
    """Frequencies of a triad on `root` (semitones above A) with A = 55 Hz * 2**octave."""
    third = 3 if quality == "m" else 4
    return [55.0 * 2 ** octave * 2 ** (semi / 12) for semi in (root, root + third, root + 7)]


def synth_track(bpm=128.0, duration_s=30.0, seed=0, sample_rate=44100, stereo=False, breakdowns=()):
    """Render a demo track.

    Parameters
    ----------
    bpm : float
        Tempo in beats per minute (any positive value; 4/4, one chord per bar).
    duration_s : float
        Length in seconds; the last bar is cut where the track ends.
    seed : int
        Picks the progression, hat and bass patterns and the noise; same seed, same samples.
    sample_rate : int
        Output rate in Hz.
    stereo : bool
        False: shape (n,). True: shape (n, 2), the pad detuned differently left and right and the
        hats panned slightly, so the two channels differ.
    breakdowns : sequence of (start_bar, n_bars)
        Bars (counted from 0) where drums and bass stop and only the pad plays; beats go on.

    Returns
    -------
    DemoTrack with the audio normalised to a -1 dBFS peak (no clipping) and exact event times.
    """
    if bpm <= 0 or duration_s <= 0 or sample_rate <= 0:
        raise ValueError("bpm, duration_s and sample_rate must be positive")
    rng = np.random.default_rng(seed)
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    hat_steps = HAT_PATTERNS[rng.integers(len(HAT_PATTERNS))]
    bass_steps = BASS_PATTERNS[rng.integers(len(BASS_PATTERNS))]
    n = int(round(duration_s * sample_rate))
    beat_s = 60.0 / bpm
    n_bars = int(np.ceil(duration_s / (4 * beat_s)))
    muted = {bar for start, count in breakdowns for bar in range(start, start + count)}

    kick, snare = _kick(sample_rate, rng), _snare(sample_rate, rng)
    hats = [_hat(sample_rate, rng) for _ in range(4)]      # a few variants, less machine-like
    drums, bass, pad = np.zeros(n), np.zeros(n), np.zeros((n, 2))
    hat_pan = np.zeros((n, 2))
    kicks, snares, hat_times = [], [], []

    def start_of(step):                                     # sixteenth-note step -> start sample
        return int(round(step * beat_s / 4 * sample_rate))

    for bar in range(n_bars):
        root, quality = progression[bar % len(progression)]
        bar_start, bar_end = start_of(16 * bar), min(n, start_of(16 * (bar + 1)))
        # pad: detuned saw triad, slow attack/release, one chord per bar (also in breakdowns)
        length = bar_end - bar_start
        if length > 0:
            env = np.minimum(np.arange(length) / (0.15 * sample_rate), 1.0)
            env *= np.minimum((length - np.arange(length)) / (0.1 * sample_rate), 1.0)
            for ch, detune in enumerate((0.997, 1.004)):
                voice = sum(_saw(f * detune, length, sample_rate, rng.random()) + _saw(f / detune, length, sample_rate)
                            for f in _chord_hz(root, quality, 2))
                pad[bar_start:bar_end, ch] += 0.12 * voice * env
        if bar in muted:
            continue
        for step in range(16):
            s = start_of(16 * bar + step)
            if s >= n:
                break
            if step % 4 == 0:
                _add(drums, s, kick)
                kicks.append(s)
            if step in (4, 12):
                _add(drums, s, 0.6 * snare)
                snares.append(s)
            if step in hat_steps:
                hat = hats[rng.integers(len(hats))] * (0.25 if step % 2 else 0.35)
                _add(hat_pan[:, 0], s, hat * 0.8)
                _add(hat_pan[:, 1], s, hat * 1.0)
                hat_times.append(s)
            if step in bass_steps:
                note_len = int(beat_s / 4 * 0.9 * sample_rate)
                env = np.exp(-np.arange(note_len) / (0.08 * sample_rate)) * np.minimum(
                    (note_len - np.arange(note_len)) / (0.005 * sample_rate), 1.0)
                bass_hz = 55.0 * 2 ** ((root if root <= 6 else root - 12) / 12)    # 41-78 Hz
                _add(bass, s, 0.5 * _saw(bass_hz, note_len, sample_rate) * env)

    bass = sosfilt(butter(2, 400, "lowpass", fs=sample_rate, output="sos"), bass)
    pad = sosfilt(butter(2, 2500, "lowpass", fs=sample_rate, output="sos"), pad, axis=0)
    mix = (drums + bass)[:, None] + pad + hat_pan
    mix = mix if stereo else mix.mean(axis=1)
    mix *= 10 ** (-1 / 20) / max(np.max(np.abs(mix)), 1e-9)     # -1 dBFS peak: no clipping
    to_s = lambda samples: np.asarray(samples, dtype=np.float64) / sample_rate  # noqa: E731
    beats = np.arange(int(np.ceil(duration_s / beat_s))) * beat_s
    return DemoTrack(mix.astype(np.float32), sample_rate, float(bpm), beats[beats < duration_s],
                     to_s(kicks), to_s(snares), to_s(hat_times))


def write_track(path, track):
    """Write `track.audio` to `path`; the format follows the suffix (.wav, .flac or .ogg).

    WAV is written as 16-bit PCM, FLAC as 16-bit, OGG as Vorbis. Raises UserError for another
    suffix or a folder that does not exist.
    """
    path = Path(path)
    formats = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
    if path.suffix.lower() not in formats:
        raise UserError(f"{path}: cannot write a {path.suffix or 'suffix-less'} file; expected .wav, .flac or .ogg")
    if not path.parent.is_dir():
        raise UserError(f"{path}: folder {path.parent} does not exist")
    fmt, subtype = formats[path.suffix.lower()]
    sf.write(str(path), track.audio, track.sample_rate, format=fmt, subtype=subtype)
    return path


def demo_track(cache_dir=None):
    """The synthesised demo track (128 BPM, 2 minutes), written once to the cache as a wav."""
    path = default_cache_dir(cache_dir) / "demo-128bpm.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            write_track(tmp.with_suffix(".wav"), synth_track(bpm=128, duration_s=120.0, seed=0))
            tmp.with_suffix(".wav").replace(tmp)
    return path
