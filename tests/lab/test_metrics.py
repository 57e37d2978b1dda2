"""Sync metrics on videos whose ground truth is exact: small (64x64, 30 fps, 10 s) H.264 + AAC
files that cut to a new picture on every kick of a synthesised track (synth_track gives the kick
times), muxed with that track. Controls: the same cuts shuffled in time, the cuts 3 frames late,
and a video that holds still through a silent stretch.
"""

import json

import numpy as np
import pytest

from flowvj.audio.synth import synth_track, write_track
from flowvj.cli import main
from flowvj.lab.metrics import (REPORT_KEYS, av_align, cross_correlation, onset_envelope, pick_peaks,
                            sync_report)
from flowvj.outputs.video import VideoWriter

FPS = 30
SECONDS = 10
FRAMES = FPS * SECONDS
SILENT_S = (4.0, 6.5)            # the stretch made silent (and held still) in the idle test


@pytest.fixture(scope="module")
def track():
    return synth_track(bpm=128.0, duration_s=SECONDS, seed=0)


@pytest.fixture(scope="module")
def kick_frames(track):
    return np.round(track.kicks * FPS).astype(int)


def render(path, cut_frames, audio=None, seed=1):
    """64x64 video: a random 8x8-block picture, replaced by a new one on each frame in cut_frames."""
    rng = np.random.default_rng(seed)
    cuts = set(int(i) for i in cut_frames)
    picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with VideoWriter(path, size=(64, 64), fps=FPS, audio=audio) as out:
        for i in range(FRAMES):
            if i in cuts:
                picture = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            out.write(picture)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory, track, kick_frames):
    folder = tmp_path_factory.mktemp("sync")
    shuffled = np.sort(np.random.default_rng(5).choice(np.arange(1, FRAMES), len(kick_frames), replace=False))
    return {
        "synced": render(folder / "synced.mp4", kick_frames, track.audio),
        "late": render(folder / "late.mp4", kick_frames + 3, track.audio),
        "shuffled": render(folder / "shuffled.mp4", shuffled, track.audio),
    }


@pytest.fixture(scope="module")
def reports(videos):
    return {name: sync_report(path) for name, path in videos.items()}


def test_cross_correlation_lag_is_positive_when_the_video_follows_the_audio():
    audio = np.zeros(100)
    audio[[10, 37, 61, 80]] = 1.0
    lags, r = cross_correlation(audio, np.roll(audio, 4), max_lag=6)
    assert lags[np.argmax(r)] == 4 and r.max() == pytest.approx(1.0, abs=0.1)


def test_av_align_is_the_iou_of_peaks_matched_within_one_frame():
    # audio peaks 10, 20, 30; visual 11 (match), 25, 31 (match): 2 / (3 + 3 - 2)
    assert av_align([10, 20, 30], [11, 25, 31]) == pytest.approx(0.5)
    assert av_align([10, 20], [10, 20]) == 1.0 and av_align([10], [12]) == 0.0


def test_onset_envelope_peaks_on_the_frames_nearest_every_kick(track):
    times = np.arange(FRAMES) / FPS
    peaks = pick_peaks(onset_envelope(track.audio, times, FPS))
    # every kick after the one at t = 0 (whose frame interval starts before the audio) is a peak
    # on the frame nearest to it
    nearest = np.abs(peaks[None, :] - track.kicks[1:, None] * FPS).min(axis=1)
    assert np.all(nearest <= 0.51), nearest      # a kick exactly between two frames may take either


def test_video_cut_on_every_kick_correlates_at_lag_zero(reports):
    synced = reports["synced"]
    # measured: xcorr_peak 0.85 at 0 ms, av_align 0.43 (21 cuts vs 49 onset peaks incl. snares,
    # hats and bass), every tracked beat with a cut and every cut on a beat (1.0, 1.0)
    assert synced["xcorr_peak"] >= 0.5
    assert abs(synced["xcorr_lag_ms"]) <= 1000 / FPS
    assert synced["beat_to_visual"] >= 0.9 and synced["visual_to_beat"] >= 0.9
    assert synced["av_align"] >= 0.35


def test_cuts_shuffled_in_time_score_clearly_lower(reports):
    synced, shuffled = reports["synced"], reports["shuffled"]
    # measured: xcorr_peak 0.07, av_align 0.16, beat_to_visual 0.13, visual_to_beat 0.20
    assert shuffled["xcorr_peak"] <= synced["xcorr_peak"] - 0.3
    assert shuffled["av_align"] <= synced["av_align"] - 0.1
    assert shuffled["beat_to_visual"] <= synced["beat_to_visual"] - 0.5
    assert shuffled["visual_to_beat"] <= synced["visual_to_beat"] - 0.5


def test_cuts_three_frames_late_report_plus_100_ms(reports):
    late = reports["late"]
    # measured: +100.0 ms, xcorr_peak 0.83
    assert late["xcorr_lag_ms"] == pytest.approx(100.0, abs=0.5)
    assert late["xcorr_peak"] >= 0.5
    assert late["av_align"] < 0.1          # a 3-frame offset is outside AV-Align's +-1 frame window


def test_idle_jitter_of_a_video_still_in_a_silent_stretch_is_far_below_loud_motion(tmp_path, track, kick_frames):
    audio = track.audio.copy()
    audio[int(SILENT_S[0] * track.sample_rate):int(SILENT_S[1] * track.sample_rate)] = 0.0
    cuts = kick_frames[(kick_frames < SILENT_S[0] * FPS) | (kick_frames >= SILENT_S[1] * FPS)]
    result = sync_report(render(tmp_path / "idle.mp4", cuts, audio))
    # measured: idle_jitter 0.0002 grey levels per frame vs loud_motion 5.84
    assert result["loud_motion"] > 2.0
    assert result["idle_jitter"] < 0.02 * result["loud_motion"]


def test_cli_sync_json_prints_every_metric_with_audio_given_separately(run_flowvj, tmp_path, track, kick_frames):
    video = render(tmp_path / "silent.mp4", kick_frames)          # no audio stream
    wav = write_track(tmp_path / "track.wav", track)
    result = run_flowvj("sync", video, "--audio", wav, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == set(REPORT_KEYS)
    assert {"xcorr_peak", "xcorr_lag_ms", "av_align", "idle_jitter", "loud_motion",
            "beat_to_visual", "visual_to_beat"} <= set(report)
    assert report["xcorr_peak"] >= 0.5 and abs(report["xcorr_lag_ms"]) <= 1000 / FPS


def _assert_one_line_error(capsys, argv, name):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(name) in err and "Traceback" not in err, err
    return err


def test_sync_of_an_unreadable_video_fails_with_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    _assert_one_line_error(capsys, ["sync", str(bad), "--json"], bad)


def test_sync_of_a_missing_video_fails_with_one_line_naming_it(tmp_path, capsys):
    _assert_one_line_error(capsys, ["sync", str(tmp_path / "missing.mp4")], tmp_path / "missing.mp4")


def test_sync_of_an_audio_file_without_video_fails_with_one_line_naming_it(tmp_path, capsys, track):
    wav = write_track(tmp_path / "track.wav", track)
    _assert_one_line_error(capsys, ["sync", str(wav)], wav)


def test_sync_of_a_video_without_audio_needs_the_audio_flag(tmp_path, capsys):
    video = render(tmp_path / "mute.mp4", [])
    assert "--audio" in _assert_one_line_error(capsys, ["sync", str(video), "--json"], video)
