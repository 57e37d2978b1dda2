"""Audio sources: decoding every format, the ring buffer, and the live path through a real
(private) PulseAudio daemon: a track played by Playback into a null sink and captured from its
monitor by DeviceSource must come back as the same music, with its kicks and tempo.

Code that opens sound devices runs in subprocesses started with the daemon's environment
(PortAudio reads its device list once, when sounddevice is imported); see tests/pulse.py.
"""

import fractions
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from flowvj.audio.decode import decode, resample
from flowvj.audio.ringbuffer import RingBuffer
from flowvj.audio.sources import FileSource
from flowvj.errors import UserError
from conftest import SHARED
from pulse import PulseDaemon

DATA = SHARED / "data"
TRACK = DATA / "music" / "lmms_EsoXLB-CPU_128bpm.ogg"
TRACK_BPM = 128.0
FLOWVJ = Path(sys.executable).with_name("flowvj")
RATE = 44100


def shared_file(path):
    if not path.is_file():
        pytest.fail(f"real test data missing: {path}")
    return path


def test_signal(seconds=2.0, rate=RATE):
    """Tones with a moving envelope and decaying bursts: easy to tell apart from a shifted copy."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 220 * t)
            + 0.15 * np.sin(2 * np.pi * 660 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.1 * np.sin(2 * np.pi * 2500 * t) * np.exp(-(t % 0.5) * 8)).astype(np.float32)


test_signal.__test__ = False  # a helper, not a test


def best_lag(x, reference):
    """Lag (samples) at which x best matches reference: x[lag + i] ~ reference[i]."""
    c = correlate(x, reference, mode="full", method="fft")
    return int(np.argmax(c)) - (len(reference) - 1)


def write_pyav(path, samples, rate, codec, timestamps=True):
    """Encode mono float32 with PyAV. With timestamps the encoder's priming is declared in the
    file (an MP4 edit list); without, the file does not say (as naive writers produce)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        if timestamps:
            frame.pts, frame.time_base = 0, fractions.Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def write_format(path, samples, rate=RATE):
    kind = path.suffix
    if kind in (".wav", ".flac"):
        sf.write(path, samples, rate)
    elif kind == ".ogg":
        sf.write(path, samples, rate, format="OGG", subtype="VORBIS")
    elif kind == ".mp3":
        sf.write(path, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
    elif kind == ".opus":  # Opus runs at 48 kHz only
        sf.write(path, resample(samples, rate, 48000), 48000, format="OGG", subtype="OPUS")
    elif kind == ".m4a":
        write_pyav(path, samples, rate, "aac")
    return path


# --- decoding -----------------------------------------------------------------------------

# Samples the decoded length may differ by (codec frame granularity); 0 = exact.
LENGTH_TOLERANCE = {".wav": 0, ".flac": 0, ".ogg": 0, ".mp3": 1152, ".opus": 960, ".m4a": 1024}


@pytest.mark.parametrize("suffix", sorted(LENGTH_TOLERANCE))
def test_every_format_decodes_to_the_same_signal_in_time(tmp_path, suffix):
    original = test_signal()
    decoded = decode(write_format(tmp_path / f"signal{suffix}", original))
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) - len(original)) <= LENGTH_TOLERANCE[suffix]
    n = min(len(decoded), len(original))
    assert np.corrcoef(decoded[:n], original[:n])[0, 1] > 0.99  # at lag 0: no codec delay left
    assert abs(best_lag(decoded[:n], original[:n])) <= 2


@pytest.mark.parametrize("timestamps", [True, False], ids=["declared", "undeclared"])
def test_aac_priming_is_trimmed_so_m4a_lines_up_with_the_original(tmp_path, timestamps):
    original = test_signal(3.0)
    path = tmp_path / "signal.m4a"
    write_pyav(path, original, RATE, "aac", timestamps=timestamps)
    decoded = decode(path)
    assert abs(best_lag(decoded, original)) <= 4
    assert abs(len(decoded) - len(original)) <= 1024


def test_stereo_is_mixed_down_to_the_mean_of_its_channels(tmp_path):
    left, right = test_signal(), test_signal()[::-1].copy()
    sf.write(tmp_path / "stereo.wav", np.column_stack([left, right]), RATE, subtype="FLOAT")
    np.testing.assert_allclose(decode(tmp_path / "stereo.wav"), (left + right) / 2, atol=1e-6)


def test_resampling_48k_to_44k1_keeps_a_sines_frequency_and_the_duration(tmp_path):
    t = np.arange(3 * 48000) / 48000
    sf.write(tmp_path / "sine48k.wav", 0.5 * np.sin(2 * np.pi * 1000.0 * t), 48000, subtype="FLOAT")
    decoded = decode(tmp_path / "sine48k.wav")
    assert len(decoded) == 3 * RATE
    middle = decoded[RATE // 2: RATE // 2 + RATE]  # one second away from the edges: 1 Hz bins
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), 8 * len(middle)))
    assert abs(np.argmax(spectrum) * RATE / (8 * len(middle)) - 1000.0) < 0.5
    assert abs(np.sqrt(np.mean(middle ** 2)) - 0.5 / np.sqrt(2)) < 0.005  # level kept too


def test_file_source_blocks_cover_the_signal_with_their_start_times(tmp_path):
    original = test_signal(1.0)
    sf.write(tmp_path / "s.wav", original, RATE, subtype="FLOAT")
    source = FileSource(tmp_path / "s.wav")
    blocks = list(source.blocks())
    assert all(len(b.samples) == 1024 for b in blocks)
    assert [b.start_s for b in blocks] == [i * 1024 / RATE for i in range(len(blocks))]
    joined = np.concatenate([b.samples for b in blocks])
    np.testing.assert_array_equal(joined[:len(original)], source.samples)
    assert not joined[len(original):].any()  # the last block is padded with silence
    assert source.duration_s == len(original) / RATE
    assert len(list(source.blocks(4096))[0].samples) == 4096


def test_real_shared_tracks_decode_with_their_declared_duration():
    oggs, opuses = sorted((DATA / "music").glob("*.ogg")), sorted((DATA / "music").glob("*.opus"))
    if len(oggs) < 8 or len(opuses) < 2:
        pytest.fail(f"real test data missing: expected 8 .ogg and 2 .opus in {DATA / 'music'}")
    files = [*oggs, *opuses, shared_file(DATA / "beats" / "beatnet_808kick120bpm.mp3")]
    for path in files:
        decoded_s = len(decode(path)) / RATE
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            pyav_s = float(stream.duration * stream.time_base)
        assert abs(decoded_s - sf.info(str(path)).duration) < 0.01, path.name
        assert abs(decoded_s - pyav_s) < 0.05, path.name
        assert 5 < decoded_s < 600, path.name


def cut(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def garble_middle(path):
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def bad_files(tmp_path):
    """name -> a file decode() must refuse."""
    long_signal = test_signal(6.0)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio at all\n" * 100)
    (tmp_path / "noise.mp3").write_bytes(np.random.default_rng(1).bytes(50_000))
    from PIL import Image
    Image.new("RGB", (16, 16)).save(tmp_path / "picture.png")
    sf.write(tmp_path / "no_samples.wav", np.zeros(0, np.float32), RATE)
    half_ogg = tmp_path / "half_track.ogg"
    half_ogg.write_bytes(shared_file(DATA / "music" / "lmms_Alf42red-Mauiwowi_102bpm.ogg").read_bytes())
    return {
        "empty": tmp_path / "empty.wav",
        "missing": tmp_path / "missing.flac",
        "unknown text": tmp_path / "notes.txt",
        "random bytes as mp3": tmp_path / "noise.mp3",
        "image": tmp_path / "picture.png",
        "no samples": tmp_path / "no_samples.wav",
        "truncated wav": cut(write_format(tmp_path / "t.wav", long_signal), 0.5),
        "truncated flac": cut(write_format(tmp_path / "t.flac", long_signal), 0.5),
        "truncated mp3": cut(write_format(tmp_path / "t.mp3", long_signal), 0.5),
        "truncated m4a": cut(write_format(tmp_path / "t.m4a", long_signal), 0.5),
        "truncated real ogg": cut(half_ogg, 0.5),
        "corrupt flac": garble_middle(write_format(tmp_path / "c.flac", long_signal)),
        "corrupt ogg": garble_middle(write_format(tmp_path / "c.ogg", long_signal)),
    }


def test_unreadable_files_give_a_one_line_user_error_naming_the_file(tmp_path):
    for name, path in bad_files(tmp_path).items():
        with pytest.raises(UserError) as caught:
            decode(path)
        message = str(caught.value)
        assert str(path) in message and "\n" not in message, f"{name}: {message}"
    with pytest.raises(UserError, match="truncated"):
        decode(tmp_path / "t.wav")
    with pytest.raises(UserError, match="truncated"):
        decode(tmp_path / "half_track.ogg")
    with pytest.raises(UserError, match="empty"):
        decode(tmp_path / "empty.wav")


def test_the_cli_refuses_a_bad_track_with_one_line_and_exit_code_2(tmp_path):
    """Through a command that decodes a track (`flowvj analyze`, the analyzer's CLI)."""
    bad = cut(write_format(tmp_path / "cut.flac", test_signal(6.0)), 0.5)
    result = subprocess.run([str(FLOWVJ), "analyze", str(bad)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("flowvj: error: ") and result.stderr.count("\n") == 1
    assert str(bad) in result.stderr


# --- ring buffer --------------------------------------------------------------------------

def test_ring_buffer_returns_the_latest_samples_and_overwrites_the_oldest():
    ring = RingBuffer(8)
    samples, end = ring.read_latest(4)
    assert end == 0 and not samples.any()  # nothing written yet: silence
    ring.write(np.arange(1, 4))
    np.testing.assert_array_equal(ring.read_latest(5)[0], [0, 0, 1, 2, 3])
    ring.write(np.arange(4, 12))  # 11 written into 8 places: 1..3 are gone
    samples, end = ring.read_latest(8)
    np.testing.assert_array_equal(samples, np.arange(4, 12))
    assert end == 11
    ring.write(np.arange(100, 120))  # more than the capacity at once: only the last 8 kept
    np.testing.assert_array_equal(ring.read_latest(8)[0], np.arange(112, 120))
    assert ring.written == 31


def test_ring_buffer_silence_keeps_the_clock_running_and_clear_forgets_old_audio():
    ring = RingBuffer(8)
    ring.write(np.ones(8))
    ring.clear()
    assert not ring.read_latest(8)[0].any() and ring.written == 8
    ring.write_silence(100)
    assert ring.written == 108 and not ring.read_latest(8)[0].any()


def test_a_slow_reader_never_sees_old_audio():
    """A writer fills the ring with a running sample counter much faster than the reader reads:
    every read must end at the newest sample written at that moment and be contiguous: the
    reader skips what it missed, it never works through a backlog. The writer runs until the
    reader has read enough times (not for a fixed count), so a busy machine cannot end the
    writing before the first read."""
    ring, block, wanted_reads = RingBuffer(4096), 256, 30
    stop = threading.Event()
    blocks = []

    def writer():
        i = 0
        while not stop.is_set():
            ring.write(np.arange(i * block, (i + 1) * block, dtype=np.float32))
            i += 1
        blocks.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    reads, skipped, deadline = 0, 0, time.monotonic() + 60
    try:
        while reads < wanted_reads and time.monotonic() < deadline:
            before = ring.written
            samples, end = ring.read_latest(512)
            after = ring.written
            if end >= 512:
                np.testing.assert_array_equal(samples, np.arange(end - 512, end, dtype=np.float32))
                assert before <= end <= after  # the newest audio at the moment of reading
                reads += 1
            time.sleep(0.002)  # slow reader: many blocks are written between two reads
            skipped = max(skipped, ring.written - end)
    finally:
        stop.set()
        thread.join()
    assert reads == wanted_reads
    assert skipped > ring.capacity  # the writer really lapped the reader at least once
    total = blocks[0] * block
    np.testing.assert_array_equal(ring.read_latest(512)[0], np.arange(total - 512, total))


# --- without PortAudio --------------------------------------------------------------------

def test_decoding_works_without_portaudio_and_devices_say_what_to_install(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise ImportError('no PortAudio on this machine (test)')\n")
    sf.write(tmp_path / "s.wav", test_signal(1.0), RATE)
    env = dict(os.environ, PYTHONPATH=str(fake), PYTHONUNBUFFERED="1")
    code = textwrap.dedent(f"""
        from flowvj.audio.sources import DeviceSource, FileSource
        from flowvj.errors import UserError
        print(len(FileSource({str(tmp_path / 's.wav')!r}).samples))
        try:
            DeviceSource("pulse").start()
        except UserError as e:
            print("error:", e)
    """)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(RATE)
    assert lines[1].startswith("error:") and "libportaudio2" in lines[1]
    cli = subprocess.run([str(FLOWVJ), "devices"], env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2
    assert cli.stderr.count("\n") == 1 and cli.stderr.startswith("flowvj: error:")
    assert "libportaudio2" in cli.stderr


# --- the live path through a real PulseAudio daemon ---------------------------------------

@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    daemon = PulseDaemon(tmp_path_factory.mktemp("pulse")).start()
    yield daemon
    daemon.stop()


def run_in(daemon, code, *args, timeout_s=120):
    """Run code (a python script) with the daemon's environment; its stdout's last line as JSON."""
    result = daemon.run_python(textwrap.dedent(code), *args, timeout_s=timeout_s)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.splitlines()[-1]), stderr=result.stderr)


def test_flowvj_devices_lists_the_pulse_devices(pulse):
    result = subprocess.run([str(FLOWVJ), "devices"], env=pulse.env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    inputs, outputs = result.stdout.split("outputs")
    for section in (inputs, outputs):
        assert " pulse " in section and " default " in section and "*" in section
        assert "ALSA" in section and "Hz" in section


FIND = """
    import json
    from flowvj.audio.devices import find_device, list_devices
    from flowvj.errors import UserError
    out = {"names": {d.index: d.name for d in list_devices()},
           "pulse": find_device("pulse"), "PULSE out": find_device("PULSE", "output"),
           "default": find_device(None), "index": find_device(str(find_device("pulse")))}
    for spec in ["no-such-card", "u", "99"]:
        try:
            out[spec] = find_device(spec)
        except UserError as e:
            out[spec] = str(e)
    print(json.dumps(out))
"""


def test_devices_are_found_by_index_or_name_and_bad_names_list_the_candidates(pulse):
    found = run_in(pulse, FIND)
    names = {int(i): name for i, name in found["names"].items()}
    pulse_index = next(i for i, name in names.items() if name == "pulse")
    assert found["pulse"] == found["PULSE out"] == found["index"] == pulse_index
    assert names[found["default"]] == "default"
    listing = [f"[{i}] {name}" for i, name in names.items()]
    assert "matches no input device" in found["no-such-card"]
    assert all(item in found["no-such-card"] for item in listing)
    assert "matches several" in found["u"] and all(item in found["u"] for item in listing)
    assert "no input device has that index" in found["99"]
    assert not any("\n" in found[k] for k in ("no-such-card", "u", "99"))


POSITION = """
    import json, sys, time
    import numpy as np
    from flowvj.audio.sources import FileSource, Playback
    clip = FileSource(sys.argv[1])
    player = Playback(clip, device="pulse")
    rows, before = [], player.position_s()
    with player:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6.0:
            position_s, written = player.position_s(), player.frames_written
            samples, time_s = player.read_latest(1024)
            end = round(time_s * clip.rate)
            same = bool(np.array_equal(samples, clip.samples[end - 1024:end])) if end >= 1024 else None
            rows.append([time.monotonic() - t0, position_s, written, time_s, same])
            time.sleep(0.02)
        latency_s = player.latency_s
    print(json.dumps({"before": before, "rows": rows, "latency_s": latency_s,
                      "rate": player.device_rate, "block": player.block_size}))
"""


def test_playback_position_starts_at_zero_and_advances_with_the_device(pulse, tmp_path):
    sf.write(tmp_path / "clip.wav", test_signal(8.0), RATE)
    out = run_in(pulse, POSITION, tmp_path / "clip.wav")
    rate, block = out["rate"], out["block"]
    rows = np.array([r[:4] for r in out["rows"]], dtype=float)
    wall, position_s, written, time_s = rows.T
    assert out["before"] == 0.0 and rate == RATE
    assert position_s[0] < 0.1  # starts at 0 (the first reads come before much is heard)
    assert np.all(np.diff(position_s) >= 0)
    # read_latest (called just after position_s) reports the position at its own moment
    assert np.all(time_s >= position_s) and np.all(time_s - position_s < 0.05)
    # What is heard trails what was written by the device's buffering, never more.
    lag = written - position_s * rate
    assert lag.min() > -1e-6 and lag.max() <= out["latency_s"] * rate + 2 * block, (lag.min(), lag.max())
    # Once running (PulseAudio holds a new stream for a second or so), the position advances at
    # the rate the device takes frames, and in step with time: slopes of least-squares fits
    # (about 0.985 here, as PulseAudio grows its buffer by ~50 ms after the start).
    steady = position_s > 0.2
    assert steady.sum() > 20, "playback did not get going"
    assert abs(np.polyfit(written[steady], position_s[steady] * rate, 1)[0] - 1.0) < 0.03
    assert abs(np.polyfit(wall[steady], position_s[steady], 1)[0] - 1.0) < 0.03
    assert all(r[4] for r in out["rows"] if r[4] is not None)  # the audio at the position


PLAY_AND_CAPTURE = """
    import json, sys, time
    import numpy as np
    from flowvj.audio.sources import DeviceSource, FileSource, Playback
    track, start_s, seconds, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    clip = FileSource(track)
    clip.samples = clip.samples[int(start_s * clip.rate):int((start_s + seconds) * clip.rate)]
    with DeviceSource("pulse", buffer_s=4.0) as mic:
        deadline = time.monotonic() + 20
        while not mic.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        n = 2 * mic.rate
        captured = np.zeros(int((seconds + 60) * mic.rate), np.float32)

        def take():  # stitch the latest 2 s into the recording at its audio time
            samples, time_s = mic.read_latest(n)
            end = round(time_s * mic.rate)
            captured[max(end - n, 0):end] = samples[max(n - end, 0):]
            return end

        with Playback(clip, device="pulse") as player:
            deadline = time.monotonic() + seconds + 30
            while not player.finished and time.monotonic() < deadline:
                time.sleep(0.1)
                take()
            finished = player.finished
        time.sleep(0.5)
        end = take()
    np.save(out, captured[:end])
    print(json.dumps({"finished": finished, "rate": mic.rate}))
"""


def kicks_and_tempo(samples, rate):
    """Kick onset times (s) and the final tempo (BPM) the project's analyzer finds."""
    from flowvj.audio.analyzer import Analyzer

    analyzer, kicks = Analyzer(rate), []
    for start in range(0, len(samples) - 1023, 1024):
        features = analyzer.process(samples[start:start + 1024])
        if features.kick_onset:
            kicks.append(features.time_s)
    return np.array(kicks), features.tempo_bpm


def matched_fraction(times, reference, tolerance_s):
    """Fraction of `reference` times with one of `times` within tolerance_s."""
    return float(np.mean([np.min(np.abs(times - r)) <= tolerance_s for r in reference]))


def align_piecewise(captured, clip, window=RATE, search=4096):
    """Align clip to captured one window at a time, following any gap an underrun left:
    (the captured audio matching clip, window by window; each window's correlation)."""
    lag = best_lag(captured, clip)
    pieces, correlations = [], []
    for i in range(0, len(clip) - window + 1, window):
        reference = clip[i:i + window]
        lo = max(lag + i - search, 0)
        start = lo + best_lag(captured[lo:lag + i + window + search], reference)
        piece = captured[max(start, 0):max(start, 0) + window]
        piece = np.pad(piece, (0, window - len(piece)))
        pieces.append(piece)
        correlations.append(np.corrcoef(piece, reference)[0, 1])
        lag = start - i
    return np.concatenate(pieces), np.array(correlations)


@pytest.mark.heavy
def test_a_track_played_into_the_sink_is_captured_from_its_monitor_with_its_kicks_and_tempo(
        pulse, tmp_path):
    start_s, seconds = 20.0, 16.0
    out = run_in(pulse, PLAY_AND_CAPTURE, shared_file(TRACK), start_s, seconds, tmp_path / "cap.npy")
    assert out["finished"] and out["rate"] == RATE
    captured = np.load(tmp_path / "cap.npy")
    clip = decode(TRACK)[int(start_s * RATE):int((start_s + seconds) * RATE)]
    assert best_lag(captured, clip) >= 0, "the capture started after the track"
    # A busy machine can make the player underrun: the audience hears a short gap and the rest
    # comes later. Aligning window by window keeps that from hiding whether the music arrived.
    aligned, per_window = align_piecewise(captured, clip)
    clip = clip[:len(aligned)]
    detail = (np.round(per_window, 3).tolist(), out["stderr"][-2000:])
    assert np.corrcoef(aligned, clip)[0, 1] >= 0.9, detail
    assert np.mean(per_window >= 0.9) >= 0.85, detail
    kicks, tempo = kicks_and_tempo(aligned, RATE)
    file_kicks, file_tempo = kicks_and_tempo(clip, RATE)
    assert len(kicks) >= seconds * TRACK_BPM / 60 / 2  # at least every other beat
    assert matched_fraction(kicks, file_kicks, 0.03) >= 0.8  # the same kicks, in time
    assert matched_fraction(file_kicks, kicks, 0.03) >= 0.8
    assert abs(tempo - TRACK_BPM) / TRACK_BPM < 0.02 and abs(tempo - file_tempo) / file_tempo < 0.02


LISTEN = """
    import json, os, sys, time
    import numpy as np
    from flowvj.audio.sources import DeviceSource
    with DeviceSource("pulse") as mic:
        while not os.path.exists(sys.argv[1]):
            samples, time_s = mic.read_latest(2048)
            rms = float(np.sqrt(np.mean(samples ** 2)))
            print(json.dumps([time.monotonic(), rms, time_s, mic.connected]), flush=True)
            time.sleep(0.05)
"""


SINE = ("module-sine-source", "source_name=flowvj_sine", "rate=44100", "frequency=440")


def kill_daemon(daemon):
    daemon.kill()


def unload_source(daemon):
    daemon.pactl("unload-module", SINE[0])


def load_source(daemon):
    daemon.pactl("load-module", *SINE)


@pytest.mark.heavy
@pytest.mark.parametrize("lose, restore", [(kill_daemon, PulseDaemon.start),
                                           (unload_source, load_source)],
                         ids=["daemon killed", "source unloaded"])
def test_a_lost_device_gives_silence_says_so_once_and_reconnects(tmp_path, lose, restore):
    """A source that plays a steady tone disappears mid-capture (the sound server is killed:
    the stream ends; or the source is unloaded: its callbacks just stop), then comes back. The
    DeviceSource goes silent with its clock running, warns once, and hears the tone again."""
    daemon = PulseDaemon(tmp_path / "pulse", source="flowvj_sine", modules=[" ".join(SINE)])
    daemon.start()
    stop = tmp_path / "stop"
    listener = daemon.popen_python(textwrap.dedent(LISTEN), stop)
    opened_at = time.monotonic()
    readings = []

    def read_lines():
        for line in listener.stdout:
            readings.append(json.loads(line))

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()

    def wait_for(condition, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if readings and condition(readings[-1]):
                return readings[-1]
            if listener.poll() is not None:
                pytest.fail(f"listener exited while waiting for {what}: {listener.stderr.read()}")
            time.sleep(0.05)
        pytest.fail(f"no {what} within {timeout_s} s; last readings: {readings[-3:]}")

    try:
        tone = wait_for(lambda r: r[1] > 0.05 and r[3], 30, "tone")
        time.sleep(max(0.0, opened_at + 6.0 - time.monotonic()))  # past DeviceSource.startup_s
        lose(daemon)
        lost_at = time.monotonic()
        silent = wait_for(lambda r: r[1] == 0.0, 10, "silence after the loss")
        assert silent[0] - lost_at < 2.0  # stall_s (0.5 s) and the watchdog's period
        time.sleep(2.0)
        during = [r for r in readings if r[0] > silent[0]]
        assert all(r[1] == 0.0 and not r[3] for r in during)
        assert during[-1][2] - silent[2] > 1.0  # the clock ran on through the silence
        restore(daemon)
        back = wait_for(lambda r: r[1] > 0.05 and r[3], 30, "tone after the return")
        assert back[2] > tone[2]
        stop.touch()
        listener.wait(30)
    finally:
        stop.touch()
        if listener.poll() is None:
            listener.kill()
            listener.wait(10)
        daemon.stop()
    stderr = listener.stderr.read()
    assert listener.returncode == 0, stderr
    assert stderr.count("input device 'pulse' lost") == 1, stderr
    assert stderr.count("input device 'pulse' is back") == 1, stderr
