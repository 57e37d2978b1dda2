"""--record: the set as the audience saw and heard it, written while the show runs, playable
after a normal stop, a SIGTERM and even a SIGKILL. Every file is decoded back with PyAV; the
show is the installed `flowvj play` on a synthesised track, followed silently."""

import os
import signal
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import FLOWVJ
from flowvj.audio.decode import decode
from flowvj.audio.synth import synth_track, write_track
from flowvj.errors import UserError
from flowvj.outputs.recorder import ENCODER_NICE, Recorder, check_record_path
from osc_show import read_osc_port

RATE = 44100


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    path = tmp_path_factory.mktemp("record") / "track.wav"
    write_track(path, synth_track(bpm=128, duration_s=40.0, seed=3))
    return path


@pytest.fixture(scope="module")
def show_env(subprocess_env):
    return dict(subprocess_env, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")


def play(track, out, *extra):
    """`flowvj play TRACK --silent --gen-size 64x36 --record OUT ...`."""
    return [str(FLOWVJ), "play", str(track), "--silent", "--gen-size", "64x36", "--record", str(out),
            *map(str, extra)]


def decoded(path):
    """(the video's (height, width), its frames shrunk to 80x45 uint8 RGB, their times in s,
    mono audio float32, audio rate)."""
    frames, times, audio = [], [], []
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        video = container.streams.video[0]
        size = (video.height, video.width)
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24", width=80, height=45))
            times.append(float(frame.time))
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        for frame in container.decode(audio=0):
            audio.append(frame.to_ndarray().mean(axis=0))
    return size, frames, times, np.concatenate(audio) if audio else np.zeros(0, np.float32), rate


def best_correlation(recorded, track_samples):
    """The highest normalised correlation of 2 s of the recording against the track at any lag."""
    piece = recorded[RATE:3 * RATE].astype(np.float64)
    length = len(piece)
    piece = (piece - piece.mean()) / (piece.std() * np.sqrt(length))
    reference = track_samples[: 8 * RATE].astype(np.float64)
    n = len(reference) + length
    lags = len(reference) - length + 1
    corr = np.fft.irfft(np.fft.rfft(reference, n) * np.conj(np.fft.rfft(piece, n)), n)[:lags]
    sums = np.concatenate([[0.0], np.cumsum(reference)])
    squares = np.concatenate([[0.0], np.cumsum(reference ** 2)])
    window_sum = sums[length:length + lags] - sums[:lags]
    window_norm = np.sqrt(np.maximum(squares[length:length + lags] - squares[:lags] - window_sum ** 2 / length, 1e-12))
    return float(np.max(corr / window_norm))


def test_play_records_what_was_shown_and_heard_in_sync(track, show_env, tmp_path):
    out, stats = tmp_path / "set.mp4", tmp_path / "stats.json"
    scenes = tmp_path / "scenes.toml"
    scenes.write_text('[drop]\nmode = "explore"\nspeed = 2.0\n')
    result = subprocess.run(play(track, out, "--duration", 6, "--scenes", scenes, "--stats", stats),
                            capture_output=True, text=True, env=show_env, timeout=300)
    assert result.returncode == 0, result.stderr
    size, frames, times, audio, rate = decoded(out)
    assert size == (720, 1280) and rate == RATE     # --record-size's default
    assert len(frames) >= 5 and max(np.abs(f.astype(int) - frames[0]).mean() for f in frames) > 1.0
    assert out.read_bytes()[-16:][4:8] == b"mfro"
    assert times == sorted(times) and times[-1] <= 6.5
    assert 5.0 <= len(audio) / rate <= 6.5, len(audio) / rate        # the whole run was heard
    assert best_correlation(audio, decode(track, RATE)) > 0.9
    import json

    figures = json.loads(stats.read_text())
    assert figures["record_frames"] == len(frames)
    assert figures["record_frames"] + figures["record_dropped"] == figures["frames"]
    assert "frames dropped from the recording" in result.stderr


def children(pid):
    """Process ids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def start_recording(track, out, env, fragments=2):
    """A 40 s show started and recording, once `fragments` whole fragments (about a second each)
    are in the file: on a machine busy with other jobs the encoder may take a while."""
    show = subprocess.Popen(play(track, out, "--duration", 40, "--record-size", "320x180"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    for line in show.stdout:
        if line.startswith("recording to"):
            break
    def whole_fragments():   # (the file appears with the first frame)
        return out.read_bytes().count(b"moof") if out.exists() else 0

    deadline = time.monotonic() + 30
    while whole_fragments() < fragments and time.monotonic() < deadline:
        time.sleep(0.2)
    assert show.poll() is None and whole_fragments() >= fragments
    return show


def test_a_show_killed_with_sigkill_leaves_a_file_that_plays(track, show_env, tmp_path):
    out = tmp_path / "killed.mp4"
    show = start_recording(track, out, show_env)
    for pid in children(show.pid):    # the encoder too: nothing gets to finish the file
        os.kill(pid, signal.SIGKILL)
    os.killpg(show.pid, signal.SIGKILL)
    show.wait(30)
    _, frames, times, audio, _ = decoded(out)
    assert len(frames) >= 2 and len(audio) >= RATE // 2, (len(frames), len(audio))
    assert times[-1] >= 1.0     # the first fragment ends at the keyframe forced a second in
    assert b"mfra" not in out.read_bytes()      # nothing finished it: no fragment index at its end


def test_sigterm_finishes_the_file_and_exits_143(track, show_env, tmp_path):
    out = tmp_path / "stopped.mp4"
    show = start_recording(track, out, show_env)
    show.send_signal(signal.SIGTERM)
    _, stderr = show.communicate(timeout=120)
    assert show.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "record: wrote" in stderr
    _, frames, times, audio, _ = decoded(out)
    assert len(frames) >= 3 and 1.0 <= len(audio) / RATE <= 40.0
    assert times[-1] <= len(audio) / RATE + 0.1    # every frame, and the audio to the end
    assert out.read_bytes()[-16:][4:8] == b"mfro"  # finished: the fragment index closes the file


def test_a_recording_is_never_written_over_a_file_nor_to_a_folder(tmp_path):
    existing = tmp_path / "last-night.mp4"
    existing.write_bytes(b"precious")
    with pytest.raises(UserError, match="exists"):
        check_record_path(existing)
    with pytest.raises(UserError, match=r"\.mp4"):
        check_record_path(tmp_path / "set.mkv")
    assert existing.read_bytes() == b"precious"


def test_frames_the_encoder_has_no_time_for_are_dropped_and_counted_never_the_audio(tmp_path):
    """A show far faster than the encoder: the calls never wait, frames are dropped from the
    recording and counted, and the audio is complete."""
    rng = np.random.default_rng(0)
    samples = (0.3 * rng.standard_normal(3 * RATE)).astype(np.float32)
    recorder = Recorder(tmp_path / "fast.mp4", rate=RATE, size=(640, 360), fps=30, in_flight=2)
    step = RATE // 100       # 300 frames, 10 ms of audio each, as fast as we can
    for i in range(300):
        recorder.hear(samples[i * step:(i + 1) * step], (i + 1) * step / RATE)
        recorder.show(rng.integers(0, 255, (18, 32, 3), dtype=np.uint8))
    stats = recorder.close()
    assert stats["record_dropped"] > 0 and stats["record_frames"] + stats["record_dropped"] == 300
    _, frames, _, audio, _ = decoded(tmp_path / "fast.mp4")
    assert len(frames) == stats["record_frames"]
    # all but the first frame's audio, after AAC's priming frame, up to the last frame's padding
    assert 0 <= len(audio) - 1024 - 299 * step < 1024, len(audio)


def feed(recorder, frames, start=0, step=RATE // 30):
    """hear() then show() per frame, as the live loop does, 1/30 s of quiet audio each."""
    for i, frame in enumerate(frames, start):
        recorder.hear(np.zeros(step, np.float32), (i + 1) * step / RATE)
        recorder.show(frame)


def tasks_of(pid):
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def test_every_encoder_thread_yields_to_the_show(tmp_path):
    """Every thread of the encoder, x264's and OpenBLAS's included, runs at the encoder's lower
    priority (niceness ENCODER_NICE); the show's own is untouched."""
    recorder = Recorder(tmp_path / "idle.mp4", rate=RATE, size=(320, 180), fps=30)
    feed(recorder, [np.full((36, 64, 3), 90, np.uint8)] * 5)
    encoder = recorder._process.pid
    try:
        niceness = {tid: os.getpriority(os.PRIO_PROCESS, tid) for tid in tasks_of(encoder)}
    finally:
        stats = recorder.close()
    assert len(niceness) > 1 and set(niceness.values()) == {ENCODER_NICE}, niceness
    assert os.getpriority(os.PRIO_PROCESS, 0) < ENCODER_NICE     # the show's own priority is untouched
    assert stats["record_frames"] == 5


def test_nothing_is_started_or_allocated_at_the_first_frame(tmp_path):
    """The encoder process, its shared memory and Python's resource tracker all exist once the
    recorder is made: the show's first frames start nothing (issue 25 saw the show stall for
    its first seconds with --record)."""
    from multiprocessing import resource_tracker

    def shared_blocks():     # the shared memory blocks this process has mapped
        return {line.split(None, 5)[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                if "/dev/shm/psm_" in line}

    recorder = Recorder(tmp_path / "first.mp4", rate=RATE, size=(320, 180), fps=30)
    try:
        processes, blocks = children(os.getpid()), shared_blocks()
        assert resource_tracker._resource_tracker._pid in processes
        assert recorder._process.pid in processes and len(blocks) == 1
        feed(recorder, [np.full((36, 64, 3), 90, np.uint8)] * 3)
        assert children(os.getpid()) == processes and shared_blocks() == blocks
    finally:
        recorder.close()


def test_frames_larger_than_the_first_are_recorded_after_a_size_step_up(tmp_path):
    """A show steps its generation size up mid-set: the larger frames are recorded (a frame
    larger than the recording itself is thinned to fit), none dropped for its size."""
    out = tmp_path / "steps.mp4"
    recorder = Recorder(out, rate=RATE, size=(64, 36), fps=30)
    small = np.zeros((18, 32, 3), np.uint8)
    large = np.zeros((144, 256, 3), np.uint8)
    large[:, 128:] = 255                         # white on the right half: survives the thinning
    feed(recorder, [small] * 3)
    feed(recorder, [large] * 3, start=3)
    stats = recorder.close()
    assert stats == {"record_frames": 6, "record_dropped": 0}
    size, frames, _, _, _ = decoded(out)
    assert size == (36, 64) and len(frames) == 6
    last = frames[-1].astype(int)
    assert last[:, :35].mean() < 40 and last[:, 45:].mean() > 215


def test_an_encoder_that_dies_stops_the_recording_never_the_show(tmp_path):
    """The encoder killed mid-set: every later hear() and show() returns (no BrokenPipeError
    into the frame loop), each later frame counts as dropped from the recording, close()
    returns."""
    recorder = Recorder(tmp_path / "died.mp4", rate=RATE, size=(320, 180), fps=30)
    frame = np.full((36, 64, 3), 90, np.uint8)
    feed(recorder, [frame] * 3)
    os.kill(recorder._process.pid, signal.SIGKILL)
    recorder._process.join(10)
    feed(recorder, [frame] * 30, start=3)
    stats = recorder.close()
    assert stats == {"record_frames": 3, "record_dropped": 30}


def test_the_detail_control_through_osc_changes_the_recorded_pictures_fine_detail(track, show_env, tmp_path):
    """One image in weighted mode (the picture is that image), composed and recorded at 640x360;
    /flowvj/detail 0 mid-show takes the original's detail off: the recording's high-pass energy
    falls, and the change is said in the terminal."""
    import cv2
    from pythonosc.udp_client import SimpleUDPClient

    from conftest import SHARED

    out = tmp_path / "set.mp4"
    image = SHARED / "data" / "images" / "skimage_chelsea.png"
    show = subprocess.Popen(play(track, out, "--duration", 12, "--images", image, "--mode", "weighted",
                                 "--size", "640x360", "--record-size", "640x360", "--osc-port", 0,
                                 "--fps", 20),
                            env=show_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port, printed = read_osc_port(show)
        line = printed[-1] if printed else ""
        assert port and "composed to 640x360 (detail transfer" in line, line
        time.sleep(6.0)
        SimpleUDPClient("127.0.0.1", port).send_message("/flowvj/detail", 0.0)
        _, err = show.communicate(timeout=180)
    finally:
        show.kill()
    assert show.returncode == 0, err[-3000:]
    assert "detail: 0.0 (transfer)" in err, err[-3000:]
    with av.open(str(out)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert {frame.shape for frame in frames} == {(360, 640, 3)}

    def high_pass(frame):
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(np.mean((luma - cv2.blur(luma, (5, 5))) ** 2))

    energy = [high_pass(frame) for frame in frames]
    third = len(energy) // 3
    assert np.median(energy[-third:]) < 0.6 * np.median(energy[:third]), energy
