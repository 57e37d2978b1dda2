"""Tempo, beats and phase: the F-measure itself, the salience and comb on ideal pulses, exact
synthesised ground truth (lock time, breakdowns, octave folding), and real tracks from ../shared."""

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from flowvj.audio.analyzer import Analyzer, analyze
from flowvj.audio.sources import FileSource
from flowvj.audio.synth import synth_track
from flowvj.audio.tempo import BeatTracker, beat_alignment, beat_f_measure, tempo_salience

MUSIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "music"
FRAME_RATE = 44100 / 512


@lru_cache(maxsize=None)
def _track(stem):
    """(samples at 44.1 kHz, reference beat times) of a shared LMMS track; fails if missing."""
    audio, beats = MUSIC / f"{stem}.ogg", MUSIC / f"{stem}.beats"
    for path in (audio, beats):
        if not path.is_file():
            pytest.fail(f"shared test data missing: {path}")
    return FileSource(audio).samples, np.loadtxt(beats, comments="#")[:, 0]


def _pulses(bpm, seconds, offset_s=0.0):
    """An onset-strength signal with a unit pulse on every beat (linearly split between frames)."""
    x = np.zeros(int(seconds * FRAME_RATE))
    for t in np.arange(offset_s, seconds, 60 / bpm):
        position = t * FRAME_RATE
        i = int(position)
        if i + 1 < len(x):
            x[i] += 1 - (position - i)
            x[i + 1] += position - i
    return x


def _beats(audio, rate=44100, **options):
    """Beat times emitted by the analyzer over `audio`, and the Features of every block."""
    analyzer, beats, features = Analyzer(rate, **options), [], []
    for start in range(0, len(audio) - 1023, 1024):
        f = analyzer.process(audio[start:start + 1024])
        features.append(f)
        if f.beat:
            beats.append(f.beat_time_s)
    return np.array(beats), features


# ---------------------------------------------------------------- the F-measure


def test_f_measure_is_1_for_a_perfect_match_and_0_for_a_half_beat_shift():
    reference = np.arange(20) * 0.5
    assert beat_f_measure(reference + 0.06, reference) == 1.0
    assert beat_f_measure(reference + 0.25, reference) == 0.0
    assert beat_f_measure([], reference) == beat_f_measure(reference, []) == 0.0


def test_f_measure_matches_each_estimate_to_at_most_one_reference_beat():
    reference = np.arange(10) * 0.5
    doubled = np.sort(np.concatenate([reference, reference + 0.02]))   # two estimates per beat
    assert beat_f_measure(doubled, reference) == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert beat_f_measure(reference[::2], reference) == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_f_measure_finds_the_largest_matching_not_a_greedy_one():
    # closest pair first would match 0.10 with 0.12 and leave 0.18 and 0.04 unmatched
    assert beat_f_measure([0.10, 0.18], [0.04, 0.12]) == 1.0


# ---------------------------------------------------------------- salience and comb


@pytest.mark.parametrize("bpm", [85.0, 102.0, 128.0, 140.0, 174.0])
def test_salience_peaks_at_the_tempo_of_a_pulse_train(bpm):
    grid = np.arange(80, 180, 0.1)
    salience = tempo_salience(_pulses(bpm, 8), FRAME_RATE, grid)
    assert grid[np.argmax(salience)] == pytest.approx(bpm, rel=0.005)
    assert salience.max() > 0.5


def test_salience_is_near_zero_without_a_pulse():
    noise = np.random.default_rng(0).random(int(8 * FRAME_RATE))
    assert tempo_salience(noise, FRAME_RATE, np.arange(80, 180, 0.1)).max() < 0.15


def test_comb_finds_the_phase_of_a_pulse_train():
    period = 60 / 120 * FRAME_RATE
    x = _pulses(120, 8, offset_s=0.2)
    lags, scores = beat_alignment(x, period)
    last_beat_s = 0.2 + 0.5 * np.floor((len(x) - 1) / FRAME_RATE / 0.5 - 0.4)
    expected_lag = (len(x) - 1) - last_beat_s * FRAME_RATE
    assert lags[np.argmax(scores)] == pytest.approx(expected_lag % period, abs=1.0)


def test_tracker_refuses_an_empty_tempo_range():
    with pytest.raises(ValueError, match="tempo_range"):
        BeatTracker(FRAME_RATE, (180, 80))


# ---------------------------------------------------------------- synthesised ground truth


@pytest.mark.parametrize("bpm, seed", [(100.0, 2), (128.0, 0), (140.0, 1), (150.0, 3)])
def test_synth_tempo_within_1_percent_beats_on_the_grid_and_lock_within_5_s(bpm, seed):
    track = synth_track(bpm, 25, seed=seed)
    beats, features = _beats(track.audio)
    assert features[-1].tempo_bpm == pytest.approx(bpm, rel=0.01)
    assert beats[0] < 5.0
    assert beat_f_measure(beats[beats > 5], track.beats[track.beats > 5]) >= 0.95
    assert features[-1].beat_confidence > 0.3


@pytest.mark.parametrize("silent", [False, True])
def test_a_4_bar_breakdown_keeps_tempo_and_phase(silent):
    bpm, bar = 128.0, 4 * 60 / 128.0
    track = synth_track(bpm, 40, seed=1, breakdowns=[(8, 4)])                 # bars 8-11 pad only
    audio = track.audio.copy()
    start, end = 8 * bar, 12 * bar
    if silent:
        audio[int(start * 44100):int(end * 44100)] = 0.0
    beats, features = _beats(audio)
    during = beats[(beats >= start - 0.05) & (beats < end - 0.05)]
    assert len(during) == 16                                                 # the beat runs on
    after = beats[beats >= start - 0.05]
    errors = after - np.round(after / (60 / bpm)) * (60 / bpm)
    assert np.max(np.abs(errors)) < 0.05                                     # within 50 ms throughout
    assert all(f.tempo_bpm == pytest.approx(bpm, rel=0.01) for f in features if f.time_s > start)


def test_beat_phase_rises_from_0_to_1_between_beats():
    track = synth_track(128, 12, seed=0)
    _, features = _beats(track.audio)
    locked = [f for f in features if f.time_s > 6]
    expected = (np.array([f.time_s for f in locked]) / (60 / 128)) % 1.0
    phases = np.array([f.beat_phase for f in locked])
    wrapped = (phases - expected + 0.5) % 1.0 - 0.5
    assert np.max(np.abs(wrapped)) < 0.1
    assert all(f.beat == (f.beat_phase * 60 / f.tempo_bpm < f.dt_s) for f in locked)


def test_octave_errors_fold_into_the_preferred_range():
    slow = synth_track(70, 20, seed=0)                                       # 70 BPM: below 80-180
    assert analyze(slow.audio)["tempo_bpm"] == pytest.approx(140, rel=0.02)
    fast = synth_track(140, 20, seed=1)
    assert analyze(fast.audio, tempo_range=(50, 100))["tempo_bpm"] == pytest.approx(70, rel=0.02)


# ---------------------------------------------------------------- real tracks


@pytest.mark.parametrize("stem, bpm", [("lmms_Shovon-ProgressiveHousePluckDemo_128bpm", 128),
                                       ("lmms_TameAnderson-MakeMe_140bpm", 140)])
def test_real_track_tempo_within_3_percent(stem, bpm):
    audio, _ = _track(stem)
    assert analyze(audio)["tempo_bpm"] == pytest.approx(bpm, rel=0.03)


def test_real_128_bpm_track_beats_reach_f_0_8_after_5_s():
    audio, reference = _track("lmms_Shovon-ProgressiveHousePluckDemo_128bpm")
    beats = np.array(analyze(audio)["beats"])
    assert beat_f_measure(beats[beats > 5], reference[reference > 5]) >= 0.8
