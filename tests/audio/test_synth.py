"""The demo track synthesiser: deterministic from a seed, normalised without clipping, and its
ground truth (beats, kicks, snares, hats) is where the sounds really are."""

import numpy as np
import pytest
import soundfile as sf

from flowvj.audio.synth import synth_track, write_track
from flowvj.errors import UserError


def test_same_seed_gives_identical_samples_and_another_seed_does_not():
    a, b = synth_track(128, 8, seed=3), synth_track(128, 8, seed=3)
    assert np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, synth_track(128, 8, seed=4).audio)


def test_mono_and_stereo_shapes_rate_and_dtype():
    mono = synth_track(120, 5, sample_rate=22050)
    stereo = synth_track(120, 5, sample_rate=22050, stereo=True)
    assert mono.audio.shape == (5 * 22050,) and mono.audio.dtype == np.float32
    assert stereo.audio.shape == (5 * 22050, 2) and stereo.audio.dtype == np.float32
    assert not np.allclose(stereo.audio[:, 0], stereo.audio[:, 1])   # the pad and hats differ L/R
    assert mono.duration_s == pytest.approx(5.0)


@pytest.mark.parametrize("bpm", [70.0, 128.0, 174.0])
def test_peak_is_minus_one_dbfs_so_nothing_clips(bpm):
    track = synth_track(bpm, 10, seed=1, stereo=True)
    assert np.max(np.abs(track.audio)) == pytest.approx(10 ** (-1 / 20), rel=1e-5)


def test_ground_truth_follows_the_grid_kick_on_every_beat_snare_on_two_and_four():
    track = synth_track(128, 15, seed=0)
    beat = 60 / 128
    assert np.allclose(track.beats, np.arange(len(track.beats)) * beat)
    assert track.beats[-1] < 15 <= track.beats[-1] + beat
    assert np.allclose(track.kicks, track.beats, atol=1 / track.sample_rate)       # four on the floor
    beat_of_snare = np.round(track.snares / beat).astype(int) % 4
    assert set(beat_of_snare) == {1, 3}                                           # beats 2 and 4
    sixteenths = track.hats / (beat / 4)
    assert np.allclose(sixteenths, np.round(sixteenths), atol=0.01)               # on the 16th grid
    assert len(track.hats) >= 4 * 15 * 128 / 60 / 4                              # >= 4 per bar


def test_breakdown_bars_have_no_drums_but_the_pad_and_the_beat_grid_go_on():
    track = synth_track(128, 30, seed=2, breakdowns=[(4, 4)])
    bar = 4 * 60 / 128
    start, end = 4 * bar, 8 * bar
    for hits in (track.kicks, track.snares, track.hats):
        assert not np.any((hits >= start - 1e-6) & (hits < end - 1e-6))
        assert np.any(hits >= end - 1e-6)                                         # drums come back
    assert np.sum((track.beats >= start) & (track.beats < end)) == 16
    middle = track.audio[int((start + 1) * track.sample_rate):int((end - 1) * track.sample_rate)]
    assert np.sqrt(np.mean(middle ** 2)) > 0.01                                   # the pad plays


def test_every_kick_starts_a_burst_of_low_frequency_energy():
    track = synth_track(128, 10, seed=5)
    rate, x = track.sample_rate, track.audio.astype(np.float64)
    n = int(0.02 * rate)
    ratios = []
    for t in track.kicks:
        i = int(round(t * rate))
        if i >= n:
            ratios.append(np.sum(x[i:i + n] ** 2) / np.sum(x[i - n:i] ** 2))
    assert np.min(ratios) > 2.0


def test_the_kick_drops_in_pitch():
    track = synth_track(120, 2, seed=0, breakdowns=[])
    rate = track.sample_rate
    x = track.audio[:int(0.3 * rate)].astype(np.float64)     # the first kick, before the first hat

    def dominant_hz(segment):
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), 8192))
        return np.argmax(spectrum) * rate / 8192

    assert dominant_hz(x[:int(0.015 * rate)]) > 1.5 * dominant_hz(x[int(0.1 * rate):int(0.2 * rate)])


def test_write_track_round_trips_wav_and_writes_ogg(tmp_path):
    track = synth_track(128, 3, seed=0, stereo=True)
    wav = write_track(tmp_path / "demo.wav", track)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == track.sample_rate and audio.shape == track.audio.shape
    assert np.max(np.abs(audio - track.audio)) < 1e-4                        # 16-bit PCM
    ogg = write_track(tmp_path / "demo.ogg", track)
    info = sf.info(ogg)
    assert info.format == "OGG" and info.channels == 2 and info.duration == pytest.approx(3.0, abs=0.01)


def test_write_track_refuses_an_unknown_suffix_and_a_missing_folder(tmp_path):
    track = synth_track(128, 1)
    with pytest.raises(UserError, match="demo.mp4"):
        write_track(tmp_path / "demo.mp4", track)
    with pytest.raises(UserError, match="no-such-folder"):
        write_track(tmp_path / "no-such-folder" / "demo.wav", track)
