"""Where the audio comes from: a file (offline), a file played through the speakers (live), or an
input device (live). All three give mono float32 at one analysis rate (44.1 kHz by default).

The interface is small, and the engine relies on nothing else:

    offline   FileSource(path, rate=44100, block_size=1024)
                .blocks() -> iterator of Block(samples, start_s), every block block_size long
                .samples  (the whole decoded signal, for the muxer and tests), .rate, .duration_s
    live      Playback(file_source_or_path, device=None)  and  DeviceSource(device=None)
                .start() / .stop(), or `with source:`
                .read_latest(n) -> (samples, time_s): the newest n samples that are being heard,
                    and the audio time (s) just past the last of them; never a queue
                .rate (read it after start(): a device that refuses 44100 Hz runs at its own rate)
              Playback.position_s(): what the audience hears now, from the device's clock;
              Playback.finished; DeviceSource.connected.

Live sources never lag: the reader always takes the newest audio (ringbuffer.py). Decoding is in
decode.py; device lookup (`find_device`, `devices_table` for `flowvj devices`) in devices.py,
which imports sounddevice (PortAudio) only inside functions, so that decoding and offline renders
work on a machine without libportaudio2.
"""

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from .decode import ANALYSIS_RATE, decode, resample
from .devices import find_device, load_sounddevice, quiet_stderr
from .ringbuffer import RingBuffer

BLOCK_SIZE = 1024
log = logging.getLogger(__name__)


class Block(NamedTuple):
    """One analysis block: `samples` (float32, mono) starting at `start_s` seconds."""
    samples: np.ndarray
    start_s: float


class FileSource:
    """A decoded file: fixed-size blocks with their start times (offline), or what a Playback
    plays. `samples` is a plain array; replace it with a slice to use an excerpt."""

    def __init__(self, path, rate=ANALYSIS_RATE, block_size=BLOCK_SIZE):
        self.path, self.rate, self.block_size = Path(path), int(rate), int(block_size)
        self.samples = decode(self.path, self.rate)

    @property
    def duration_s(self):
        return len(self.samples) / self.rate

    def blocks(self, block_size=None):
        """Block(samples, start_s) for consecutive blocks; the last one is zero-padded."""
        n = int(block_size or self.block_size)
        for start in range(0, len(self.samples), n):
            block = self.samples[start:start + n]
            if len(block) < n:
                block = np.pad(block, (0, n - len(block)))
            yield Block(block, start / self.rate)


class _LiveSource:
    """start()/stop() and the context manager, shared by the two live sources."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class Playback(_LiveSource):
    """Plays a decoded file through an output device and reports what the audience hears now.

    The position comes from the device's clock, not the wall clock: each callback tells which
    frame it wrote and when its first frame reaches the DAC (outputBufferDacTime), so the frame
    playing at stream time t is start + (t - dac_time) * rate, capped by what has been written.
    Visuals driven by it line up with the sound through every output latency and any stall.
    read_latest() slices the decoded file at that position: no buffer, so it cannot lag.
    Output latency is PortAudio's 'high' by default: the position already accounts for it, so a
    larger buffer costs no sync, and it spares the audience underruns on a busy machine.
    """

    def __init__(self, source, device=None, block_size=BLOCK_SIZE, latency="high"):
        self.source = source if isinstance(source, FileSource) else FileSource(source)
        self.rate, self.device, self.block_size = self.source.rate, device, int(block_size)
        self.latency = latency
        self._lock = threading.Lock()
        self._stream, self._anchor, self._frames_written, self._heard = None, None, 0, 0.0
        self._play, self._play_rate, self._latency_s = self.source.samples, self.rate, 0.0

    def start(self):
        sd = load_sounddevice()
        index = find_device(self.device, "output")
        try:
            sd.check_output_settings(index, channels=1, dtype="float32", samplerate=self.rate)
        except sd.PortAudioError:  # e.g. a bare ALSA device at 48 kHz only: play at its rate
            self._play_rate = int(sd.query_devices(index)["default_samplerate"])
            self._play = resample(self.source.samples, self.rate, self._play_rate)
        try:
            self._stream = sd.OutputStream(device=index, samplerate=self._play_rate, channels=1,
                                           dtype="float32", blocksize=self.block_size,
                                           latency=self.latency, callback=self._callback)
            self._latency_s = self._stream.latency
            self._stream.start()
        except sd.PortAudioError as e:
            raise UserError(f"output device {sd.query_devices(index)['name']!r}: "
                            f"cannot play ({e})") from None
        return self

    def _callback(self, outdata, frames, time_info, status):
        start = self._frames_written
        chunk = self._play[start:start + frames]
        outdata[:len(chunk), 0] = chunk
        outdata[len(chunk):] = 0.0
        # Some host APIs leave the DAC time at 0: then assume it plays one latency from now.
        dac_time = time_info.outputBufferDacTime or time_info.currentTime + self._latency_s
        with self._lock:
            self._anchor = (start, dac_time)
            self._frames_written = start + frames

    @property
    def frames_written(self):
        """Frames handed to the device so far (at the device's rate; the position trails it)."""
        return self._frames_written

    @property
    def latency_s(self):
        """Output latency the device reports: how far the position trails what is written."""
        return self._latency_s

    @property
    def device_rate(self):
        """The rate the device plays at (the analysis rate unless the device refused it)."""
        return self._play_rate

    def position_s(self):
        """Seconds into the track that the audience hears now; 0 before the first sound and
        never decreasing."""
        with self._lock:
            anchor, written = self._anchor, self._frames_written
        if anchor is not None and self._stream is not None and not self._stream.closed:
            start, dac_time = anchor
            frames = start + (self._stream.time - dac_time) * self._play_rate
            self._heard = min(max(frames, self._heard), written, len(self._play))
        return self._heard / self._play_rate

    @property
    def finished(self):
        """True once the last sample of the track has been heard."""
        self.position_s()
        return self._heard >= len(self._play)

    def read_latest(self, n):
        """(the n samples that end at the playback position, that position in seconds)."""
        time_s = self.position_s()
        end = round(time_s * self.rate)
        samples = self.source.samples[max(end - n, 0):end]
        return np.pad(samples, (n - len(samples), 0)), time_s

    def stop(self):
        """Stop at once (pending buffers are dropped); the position stays where it was heard."""
        self.position_s()
        if self._stream is not None:
            self._stream.close(ignore_errors=True)  # a vanished device must not fail the stop
            self._stream = None


class DeviceSource(_LiveSource):
    """Listens to an input device (mic, line-in, a monitor or loopback source).

    The PortAudio callback writes mono blocks into a RingBuffer of `buffer_s` seconds; the
    reader takes the newest audio. A watchdog thread notices a lost device (the stream ended,
    or no callback for `stall_s`), then delivers silence with the source's clock still running,
    says so once (logger flowvj.audio.sources, which prints to stderr unless configured), and
    reopens the device every `retry_s` until audio arrives again. For `startup_s` after each
    open, gaps up to startup_s are tolerated: PulseAudio's ALSA plugin pauses a new stream for
    a second or more after its first blocks. Reopening runs in its own short-lived thread, so a
    sound server that hangs instead of refusing cannot stop the silence or the clock.
    """

    def __init__(self, device=None, rate=ANALYSIS_RATE, block_size=BLOCK_SIZE, buffer_s=2.0,
                 stall_s=0.5, retry_s=1.0, startup_s=5.0):
        self.device, self.rate, self.block_size, self.buffer_s = device, int(rate), block_size, buffer_s
        self.stall_s, self.retry_s, self.startup_s = stall_s, retry_s, startup_s
        self.name, self._ring, self._stream, self._watchdog, self._reopener = None, None, None, None, None
        self._generation, self._last_callback, self._opened_at, self._ended = 0, None, 0.0, False
        self._lost = False  # from a loss until audio arrives again: one message each way
        self._dead = []  # streams given up on, closed by the reopener (closing may hang too)
        self._stopping = threading.Event()

    def start(self):
        sd = self._sd = load_sounddevice()
        self._index = find_device(self.device, "input")
        info = sd.query_devices(self._index)
        self.name, self._channels = info["name"], min(2, info["max_input_channels"])
        try:
            sd.check_input_settings(self._index, channels=self._channels, dtype="float32",
                                    samplerate=self.rate)
        except sd.PortAudioError:  # the device's own rate; the analyzer reads .rate
            self.rate = int(info["default_samplerate"])
        self._ring = RingBuffer(int(self.buffer_s * self.rate))
        self._stopping.clear()
        try:
            with quiet_stderr():
                self._open()
        except sd.PortAudioError as e:
            raise UserError(f"input device {self.name!r}: cannot open it ({e})") from None
        self._watchdog = threading.Thread(target=self._watch, name="flowvj-input-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def _open(self):
        generation = self._generation + 1

        def callback(indata, frames, time_info, status):
            if generation == self._generation:  # ignore a stream given up on
                self._ring.write(indata.mean(axis=1) if self._channels > 1 else indata[:, 0])
                self._last_callback = time.monotonic()

        def finished():
            if generation == self._generation:
                self._ended = True

        stream = self._sd.InputStream(device=self._index, samplerate=self.rate,
                                      channels=self._channels, dtype="float32",
                                      blocksize=self.block_size, callback=callback,
                                      finished_callback=finished)
        self._generation, self._last_callback, self._ended = generation, None, False
        self._opened_at = time.monotonic()
        stream.start()
        if self._stopping.is_set():  # stop() came while this (re)open was under way
            self._generation += 1
            stream.close()
        else:
            self._stream = stream

    def _watch(self):
        """Every 50 ms: notice a loss, keep silence flowing while nothing is heard (so the clock
        runs on), start a reopen attempt when one is due, announce the device's return."""
        silent_since, silence_written, next_retry = time.monotonic(), 0, 0.0
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            if self._stream is not None:
                heard = self._last_callback
                if heard is not None and self._lost:
                    self._lost = False
                    log.warning(f"input device {self.name!r} is back; listening again")
                waited = now - (heard or self._opened_at)
                settling = now - self._opened_at < self.startup_s
                if self._ended or waited > (self.startup_s if settling else self.stall_s):
                    self._drop("the stream ended" if self._ended else f"no audio for {waited:.1f} s")
                    next_retry = now + self.retry_s
            if self._stream is None or self._last_callback is None:
                if silent_since is None:
                    silent_since, silence_written = now, 0
                due = int((now - silent_since) * self.rate) - silence_written
                self._ring.write_silence(due)
                silence_written += due
            else:
                silent_since = None
            idle = self._reopener is None or not self._reopener.is_alive()
            if self._stream is None and now >= next_retry and idle:
                next_retry = now + self.retry_s
                self._reopener = threading.Thread(target=self._reopen, name="flowvj-input-reopen",
                                                  daemon=True)
                self._reopener.start()

    def _drop(self, reason):
        """Give up on the current stream; say so once per loss, not once per retry."""
        self._generation += 1  # its late callbacks are ignored from now on
        self._dead.append(self._stream)
        self._stream = None
        self._ring.clear()
        if not self._lost:
            self._lost = True
            log.warning(f"input device {self.name!r} lost ({reason}); delivering silence and "
                        f"reconnecting every {self.retry_s:g} s")

    def _reopen(self):
        while self._dead:
            with contextlib.suppress(Exception):
                self._dead.pop().close(ignore_errors=True)
        with contextlib.suppress(self._sd.PortAudioError), quiet_stderr():
            self._open()

    @property
    def connected(self):
        """True while audio is arriving from the device."""
        return self._stream is not None and not self._lost and self._last_callback is not None

    def read_latest(self, n):
        """(the newest n samples, the audio time in seconds just past the last of them)."""
        if self._ring is None:
            raise RuntimeError("DeviceSource.read_latest() before start()")
        samples, end = self._ring.read_latest(n)
        return samples, end / self.rate

    def stop(self):
        self._stopping.set()
        for thread in (self._watchdog, self._reopener):
            if thread is not None:
                thread.join(timeout=5.0)  # a reopen hung in a frozen sound server is left behind
        self._generation += 1
        for stream in [*self._dead, self._stream]:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close(ignore_errors=True)
        self._dead, self._stream, self._watchdog, self._reopener = [], None, None, None


class SilentPlayback:
    """A track followed by the wall clock, with no sound: Playback's interface for a machine with
    no output device (a server, CI, a muted preview). The position is the time since start().

    loop=True repeats the track (the clock keeps counting; only the samples wrap), so a long
    benchmark run can outlast it.
    """

    def __init__(self, source, loop=False):
        self.source = source if isinstance(source, FileSource) else FileSource(source)
        self.rate = self.source.rate
        self.loop = loop
        self._t0 = None

    def start(self):
        self._t0 = time.perf_counter()
        return self

    def position_s(self):
        if self._t0 is None:
            return 0.0
        elapsed = time.perf_counter() - self._t0
        return elapsed if self.loop else min(elapsed, self.source.duration_s)

    @property
    def finished(self):
        return not self.loop and self._t0 is not None and self.position_s() >= self.source.duration_s

    def read_latest(self, n):
        """(the n samples that end at the clock's position, that position in seconds)."""
        if not self.loop:
            return Playback.read_latest(self, n)
        time_s = self.position_s()
        end = round(time_s * self.rate)
        index = np.arange(end - n, end)
        samples = self.source.samples[index % len(self.source.samples)]
        samples[index < 0] = 0.0
        return samples, time_s

    def stop(self):
        pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
