"""The set recorder: what the audience saw and heard, to an MP4, while the show runs.

    recorder = Recorder("set.mp4", rate=source.rate, size=(1280, 720))
    LiveLoop(show, source, [window, recorder]).run()    # calls hear() then show() each frame
    recorder.close()                                    # finishes the file, logs the drops

What is recorded: each frame as `show` receives it (after brightness and the blackout, so what
the audience saw), aspect-filled to `size`, and the audio `hear` receives (exactly the samples the
analyzer heard each frame), as H.264 + AAC.

Timing: frame i is stamped with the audio time it was shown at (the `audio_time_s` of the hear()
just before it), relative to the first frame's; the audio is placed by the same clock, a gap
(a stall longer than the live loop's block cap) filled with silence. So a frame dropped from the
recording leaves a longer frame before it, never a shift between picture and sound.

Never slowing the show: scaling, colour conversion and both encoders run in a child process
(spawned, in its own process group; a thread would share the GIL with the frame loop) under
Linux's SCHED_IDLE policy: it runs only on CPU time nothing else wants, and the show's threads
preempt it the moment they wake (at nice +10 it still took 10 % of a contended core, and a
woken frame loop could wait for its time slice). Everything with a start-up cost (the child,
PyAV's import, the shared memory and Python's resource tracker) is made in the constructor,
before the show starts. The loop's side then only copies the frame and the audio into
the shared block and writes a few bytes down a pipe (see Recorder), a cost bounded by one slot
whatever the encoder does: at most IN_FLIGHT frames wait for the encoder, and a frame that finds
them all waiting is dropped from the recording and counted in `dropped`. The audio is not
dropped unless the encoder falls AUDIO_RING_BYTES behind (30 s of 48 kHz stereo).

Surviving a kill: the MP4 is fragmented (empty moov, one fragment per keyframe, a keyframe
forced every KEYFRAME_S) and every fragment is flushed to the file as it is cut, so a SIGKILL of
everything leaves a file that plays up to its last whole fragment (about KEYFRAME_S plus the
encoder's delay is lost). The child finishes the file cleanly whenever its input ends: close(),
the show's process dying (the CLI turns SIGTERM into an exception that runs close() on the way
out), or a SIGKILL of the show alone (the child notices its parent is gone). The file is written
in place, not atomically: a half-finished recording of a set is worth keeping, so an existing
file is refused rather than replaced.
"""

import atexit
import logging
import multiprocessing
import os
import signal
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UserError

log = logging.getLogger(__name__)

IN_FLIGHT = 8           # frames waiting for the encoder at most (about 0.25 s at 30 fps)
KEYFRAME_S = 1.0        # a keyframe (so a fragment) at least this often: what a kill can lose
VIDEO_TIME_BASE = Fraction(1, 1000)   # frame times in ms: variable frame rate, stamped by audio time
FINISH_TIMEOUT_S = 60.0  # close() waits this long for the encoder to finish the file
ALIVE_CHECK_S = 1.0     # how often the show's side checks the encoder is still running
# audio the encoder may fall behind by before it loses some (to silence): 30 s of 48 kHz stereo
AUDIO_RING_BYTES = 30 * 48000 * 2 * 4
# Where SCHED_IDLE is not available (not Linux), the encoder's niceness, added to the show's.
ENCODER_NICE = 10


def check_record_path(path, flag="--record"):
    """The path to record to, as a Path: an .mp4 that does not exist yet, in a folder that exists
    (or can be made) and can be written. Checked before the show starts."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise UserError(f"{flag} {path}: expected an .mp4 file to record the set to")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected an .mp4 file to record the set to")
    if path.exists():
        raise UserError(f"{flag} {path}: the file exists; expected a new file (a recording is never "
                        "written over another)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot create the folder {path.parent} "
                        f"({error.strerror or error})") from None
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{flag} {path}: the folder {path.parent} is not writable")
    return path


class Recorder:
    """A LiveLoop output that records the show to `path` (see the module docstring).

    path     a new .mp4 (check_record_path).
    rate     the audio's sample rate in Hz, or a callable returning it, read at the first hear()
             (a device may run at another rate than asked for until its stream starts).
    size     (width, height) of the recording, even; each frame is aspect-filled to it.
    fps      the show's nominal frame rate (the encoder's rate control; frames keep their own
             times).
    crf, preset  x264's quality and speed. ultrafast: a 720p frame of the show cost 32 ms on a
             2-core machine loaded by other jobs, against 70 ms for superfast (render's) and 111
             for veryfast, at about the same 3 Mbit/s for the flow's smooth pictures.
    in_flight    frames that may wait for the encoder; one more is dropped.

    The handoff costs the frame loop no thread and no pickling: frames go into `in_flight` slots
    of a shared-memory block (slot k % in_flight for the k-th frame sent; a semaphore counts the
    free ones) and a few bytes down a pipe say which; the audio goes into a ring of
    AUDIO_RING_BYTES in the same block, with the count of samples written beside it. A feeder
    thread (multiprocessing.Queue's) cost the show frames on a saturated machine: each time the
    OS descheduled it holding the GIL, the frame loop waited for it. A slot holds one frame of
    the recording's size: the show's frames come from the compositor at the show's --size, the
    recording's by default (1280x720 both), so the copy is one 720p frame (2.7 MB, ~0.3 ms) and
    the encoder only converts it (libswscale does no scaling at the same size); a larger one is
    thinned to fit (every k-th pixel; the encoder scales it to the recording's size anyway).
    """

    def __init__(self, path, rate=44100, size=(1280, 720), fps=30.0, crf=20, preset="ultrafast",
                 in_flight=IN_FLIGHT):
        from .video import check_size

        self.path = check_record_path(path)
        self.size = check_size(size)
        self._rate_of = rate if callable(rate) else (lambda: rate)
        self.rate = None
        self.in_flight = int(in_flight)
        self.dropped = self.sent = 0
        self._t0 = None             # audio time (s) of the first frame: the recording's zero
        self._failed = False
        self._result = None
        self._next_check = 0.0
        self._process = None
        self._slot_bytes = self.size[0] * self.size[1] * 3
        self._shared = self._make_shared()
        context = multiprocessing.get_context("spawn")   # no fork of a process running torch/ONNX
        reader, self._pipe = context.Pipe(duplex=False)
        self._results, results = context.Pipe(duplex=False)
        self._credits = context.BoundedSemaphore(self.in_flight)
        self._process = context.Process(
            target=_encode, name="flowvj-recorder", daemon=False,
            args=(reader, results, self._credits, str(self.path), self.size, float(fps), int(crf),
                  str(preset), os.getpid(), self._shared.name, self.in_flight, self._slot_bytes))
        self._process.start()
        reader.close(), results.close()   # the child's ends: its death is then an EOF here
        atexit.register(self.close)   # a show that forgot close() still finishes the file
        if self._receive(FINISH_TIMEOUT_S) != "ready":   # PyAV imported: no frame waits on it
            self.close()
            raise UserError(f"--record {self.path}: the encoder process did not start")

    def _make_shared(self):
        """The shared block: the audio's sample count, its ring, the frame slots. Made before the
        show starts: the first one also starts Python's resource tracker (a process)."""
        from multiprocessing import shared_memory

        try:
            shared = shared_memory.SharedMemory(
                create=True, size=8 + AUDIO_RING_BYTES + self.in_flight * self._slot_bytes)
        except OSError as error:
            raise UserError(f"--record {self.path}: cannot make the encoder's shared memory "
                            f"({error.strerror or error})") from None
        self._audio_end = np.ndarray((1,), np.int64, shared.buf, 0)
        self._audio_end[0] = 0
        self._slots = np.ndarray((self.in_flight, self._slot_bytes), np.uint8, shared.buf,
                                 8 + AUDIO_RING_BYTES)
        return shared

    # -- the live loop's side ------------------------------------------------------------------

    def hear(self, samples, audio_time_s):
        """The audio analysed this frame, ending at `audio_time_s` on the source's clock: into the
        ring at its place in the recording (a gap before it silent, an overlap cut off)."""
        if self._failed:
            return
        from .video import audio_channels

        self._time_s = float(audio_time_s)
        if self._t0 is None:   # the first frame: its time is the recording's zero
            self.rate = int(self._rate_of())
            self._t0, self._t0_sample = self._time_s, round(audio_time_s * self.rate)
            self._channels = audio_channels(samples).shape[0] if len(samples) else 1
            ring_len = AUDIO_RING_BYTES // (4 * self._channels)
            self._ring = np.ndarray((self._channels, ring_len), np.float32, self._shared.buf, 8)
            self._send(("open", self.rate, self._channels, ring_len))   # the encoder opens the file
            return              # audio before the first frame is not recorded
        if len(samples) == 0:
            return
        block = audio_channels(samples)
        if block.shape[0] != self._channels:   # mono <-> stereo mid-show: follow the first
            block = np.repeat(block.mean(axis=0, keepdims=True), self._channels, axis=0)
        start = round(audio_time_s * self.rate) - self._t0_sample - block.shape[1]
        written = int(self._audio_end[0])
        block = block[:, max(0, written - start):]
        gap = max(0, start - written)
        ring_len = self._ring.shape[1]
        if gap:
            self._ring_write(written, np.zeros((self._channels, min(gap, ring_len)), np.float32), gap)
        self._ring_write(written + gap, block[:, -ring_len:], block.shape[1])
        self._audio_end[0] = written + gap + block.shape[1]   # published last: the data is there

    def _ring_write(self, position, samples, advance):
        """Write `samples` so that they end at position + advance in the ring (wrapping)."""
        ring_len, n = self._ring.shape[1], samples.shape[1]
        at = (position + advance - n) % ring_len
        first = min(n, ring_len - at)
        self._ring[:, at:at + first] = samples[:, :first]
        self._ring[:, :n - first] = samples[:, first:]

    def show(self, frame, meters=None):
        """The frame the audience sees now: copied into a free slot for the encoder, or dropped
        from the recording (and counted) when none is free or the encoder has gone."""
        if self._t0 is None:
            return
        now = time.perf_counter()
        if not self._failed and now >= self._next_check:
            self._next_check = now + ALIVE_CHECK_S
            if not self._process.is_alive():
                self._fail()
        if self._failed:
            self.dropped += 1
            return
        frame = np.asarray(frame, np.uint8)
        step = 1
        while frame[::step, ::step].nbytes > self._slot_bytes:   # larger than the recording
            step += 1
        if not self._credits.acquire(block=False):
            self.dropped += 1
            return
        frame = frame[::step, ::step]
        slot = self._slots[self.sent % self.in_flight]
        slot[:frame.nbytes].reshape(frame.shape)[...] = frame
        pts = round((self._time_s - self._t0) / VIDEO_TIME_BASE)
        if self._send(("frame", pts, frame.shape)):   # a few bytes: never fills the pipe
            self.sent += 1
        else:
            self.dropped += 1

    def _send(self, message):
        """To the encoder: True if sent; an encoder that has gone stops the recording, never the
        show."""
        try:
            self._pipe.send(message)
            return True
        except OSError:
            self._fail()
            return False

    def stats(self):
        """For the run's --stats JSON: frames recorded and dropped from the recording."""
        result = self._result or {}
        return {"record_frames": result.get("frames", self.sent), "record_dropped": self.dropped}

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self):
        """Finish the file (the encoder takes what is waiting first) and log what was recorded and
        dropped; returns stats(). Safe to call twice."""
        if self._process is None:
            return self.stats()
        atexit.unregister(self.close)
        process, self._process = self._process, None
        self._failed = True     # a frame after this is not recorded (and counted as dropped)
        alive = process.is_alive()
        if alive:
            try:
                self._pipe.send(None)
            except OSError:
                alive = False
        if self._result is None:   # (_fail has it already)
            self._result = self._receive(FINISH_TIMEOUT_S if alive else 1.0)
        if not isinstance(self._result, dict):
            self._result = {"error": f"the encoder did not finish within {FINISH_TIMEOUT_S:g} s"}
        process.join(5.0)
        if process.is_alive():
            process.kill()
            process.join()
        self._pipe.close()
        self._audio_end = self._ring = self._slots = None   # views of the block, released first
        self._shared.close()
        self._shared.unlink()
        result = self._result
        if result.get("error"):
            log.warning("record: %s: %s", self.path, result["error"])
        if not result.get("frames"):
            log.warning("record: %s: no frame was recorded", self.path)
        else:
            log.info("record: wrote %s: %d frames, %.1f s; %d frames dropped from the recording%s",
                     self.path, result["frames"], result["duration_s"], self.dropped,
                     " (the machine was busy)" if self.dropped else "")
        return self.stats()

    def _receive(self, timeout_s):
        """The encoder's next word ("ready", or its result dict), or None."""
        try:
            return self._results.recv() if self._results.poll(timeout_s) else None
        except (EOFError, OSError):
            return None

    def _fail(self):
        """The encoder has gone: its last word if it left one (never waited for: this runs in
        the frame loop), and the show goes on without the recording."""
        self._failed = True
        self._result = self._receive(0.0)
        if not isinstance(self._result, dict):
            self._result = {"error": "the encoder stopped"}
        log.warning("record: %s: recording stopped (%s); the show goes on", self.path,
                    self._result.get("error") or "the encoder stopped")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the encoder process -------------------------------------------------------------------------

def _low_priority():
    """Run every thread of this process (numpy's import has started OpenBLAS's; those started
    later inherit it) at niceness ENCODER_NICE: the show's threads come first. Not SCHED_IDLE,
    which was tried: with one busy process beside the show it left 11-23 frames of 40 s in the
    recording (189-320 at nice 10) for no change in the show's pacing that benchmarks/outputs/
    record_stall.py could tell from the noise of a shared machine; a set recording a VJ keeps
    must hold enough frames to watch."""
    for thread in os.listdir("/proc/self/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(thread), ENCODER_NICE)
        except (AttributeError, OSError):
            pass


def _encode(messages, results, credits, path, size, fps, crf, preset, parent_pid, shared_name, slots,
            slot_bytes):
    """The child: ("open", rate, channels, ring_len) at the first frame, then ("frame", pts_ms,
    shape) per frame, None to finish -> the MP4. Ends, finishing the file, on None or when the
    show's process is gone (the pipe's EOF); sends "ready", then one result dict."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)   # the show decides when to stop, not a Ctrl-C
    try:
        os.setpgid(0, 0)    # a Ctrl-C in the terminal goes to the show, which then closes us
    except OSError:
        pass
    from multiprocessing import shared_memory

    import av  # noqa: F401 - imported before saying ready: the first frames must not wait on it

    shared = shared_memory.SharedMemory(name=shared_name)
    audio_end = np.ndarray((1,), np.int64, shared.buf, 0)
    slot_view = np.ndarray((slots, slot_bytes), np.uint8, shared.buf, 8 + AUDIO_RING_BYTES)
    # lower from here, before x264 starts a thread: the start-up above ran at the show's priority,
    # before the show starts, so that a busy machine does not hold the show's start on it
    _low_priority()
    results.send("ready")
    mp4 = ring = None
    error, frames_in, audio_read = None, 0, 0
    try:
        while True:
            message = "idle"
            if messages.poll(0.1):
                try:
                    message = messages.recv()
                except EOFError:
                    message = None          # the show was killed: finish what we have
            elif os.getppid() != parent_pid:
                message = None
            if mp4 is not None:             # the audio up to now, before the frame it led to
                end = int(audio_end[0])
                audio_read = max(audio_read, end - ring.shape[1])   # a lapped ring lost the rest
                while audio_read < end:
                    at = audio_read % ring.shape[1]
                    n = min(end - audio_read, ring.shape[1] - at)
                    mp4.audio(audio_read, ring[:, at:at + n].copy())
                    audio_read += n
            if message is None:
                break
            if message == "idle":
                continue
            if message[0] == "open":
                _, rate, channels, ring_len = message
                ring = np.ndarray((channels, ring_len), np.float32, shared.buf, 8)
                mp4 = _FragmentedMp4(path, size, fps, rate, channels, crf, preset)
            elif message[0] == "frame":
                _, pts, shape = message
                count = int(np.prod(shape))
                try:
                    small = slot_view[frames_in % len(slot_view), :count].reshape(shape).copy()
                finally:
                    frames_in += 1
                    credits.release()       # the slot is free again
                mp4.frame(pts, small)
    except Exception as exc:  # noqa: BLE001 - reported to the show, which goes on without us
        error = f"{type(exc).__name__}: {exc}"
    result = {"frames": 0, "duration_s": 0.0}
    if mp4 is not None:
        try:
            mp4.close()
        except Exception as exc:  # noqa: BLE001
            error = error or f"could not finish the file: {exc}"
        result = {"frames": mp4.frames, "duration_s": mp4.duration_s}
    audio_end = ring = slot_view = None
    shared.close()
    if error:
        result["error"] = error
    try:
        results.send(result)
    except OSError:
        pass            # nobody is listening: the show is gone


class _FragmentedMp4:
    """H.264 + AAC in a fragmented MP4 that is playable at every keyframe (see the module
    docstring). Video frames arrive with their own times (ms); audio by sample position."""

    def __init__(self, path, size, fps, rate, channels, crf, preset):
        import av

        from .video import BT709, LIMITED_RANGE

        self._av = av
        self.size, self.rate = size, int(rate)
        self.frames, self.channels = 0, int(channels)
        self._last_pts = self._last_key = None
        self._audio_done = 0          # samples encoded
        self._pending = np.zeros((self.channels, 0), np.float32)   # not yet a whole AAC frame
        self._container = av.open(path, "w", format="mp4", options={
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "flush_packets": "1"})    # each fragment reaches the file as it is cut
        video = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.codec_context.time_base = VIDEO_TIME_BASE
        # one encoder thread: the recording takes at most one core from the show
        video.options = {"crf": str(crf), "preset": preset, "forced-idr": "1", "threads": "1"}
        context = video.codec_context
        context.colorspace = context.color_primaries = context.color_trc = BT709
        context.color_range = LIMITED_RANGE
        self._video = video
        self._audio = self._container.add_stream("aac", rate=self.rate,
                                                 layout="mono" if self.channels == 1 else "stereo")
        self._audio.bit_rate = 128_000 if self.channels == 1 else 192_000
        self._reformatter = av.video.reformatter.VideoReformatter()

    @property
    def duration_s(self):
        """Seconds recorded: the last frame's time or the audio's end, whichever is later."""
        video_s = 0.0 if self._last_pts is None else float(self._last_pts * VIDEO_TIME_BASE)
        return max(video_s, (self._audio_done + self._pending.shape[1]) / self.rate)

    def frame(self, pts, small):
        """One frame shown at `pts` (ms): aspect-filled to the recording's size by cropping it to
        the output's aspect, then scaled (bicubic; nothing to scale when the frame has the
        recording's size, the usual case since the compositor) and converted to BT.709 yuv420p in
        one libswscale call: ~4 ms a 720p frame here, against ~40 ms for upscale.py's PIL resize
        followed by the conversion."""
        from ..upscale import fill_box

        pts = pts if self._last_pts is None or pts > self._last_pts else self._last_pts + 1
        height, width = small.shape[:2]
        left, top, right, bottom = (round(v) for v in fill_box((width, height), self.size))
        rgb = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(small[top:bottom, left:right]),
                                               format="rgb24")
        yuv = self._reformatter.reformat(rgb, width=self.size[0], height=self.size[1],
                                         format="yuv420p", interpolation="BICUBIC",
                                         dst_colorspace="ITU709", dst_color_range="MPEG")
        yuv.pts, yuv.time_base = pts, VIDEO_TIME_BASE
        if self._last_key is None or (pts - self._last_key) * VIDEO_TIME_BASE >= KEYFRAME_S:
            yuv.pict_type = self._av.video.frame.PictureType.I   # a new fragment starts here
            self._last_key = pts
        self._container.mux(self._video.encode(yuv))
        self._last_pts = pts
        self.frames += 1

    def audio(self, start, samples):
        """Samples (channels, n) that start at sample `start` of the recording: a gap before them
        is filled with silence, an overlap with what was already placed is cut off."""
        if samples.shape[0] != self.channels:   # mono <-> stereo mid-show: follow the first
            samples = np.repeat(samples.mean(axis=0, keepdims=True), self.channels, axis=0)
        placed = self._audio_done + self._pending.shape[1]
        if start > placed:
            samples = np.concatenate([np.zeros((self.channels, start - placed), np.float32), samples], 1)
        elif start < placed:
            samples = samples[:, placed - start:]
        self._pending = np.concatenate([self._pending, samples], 1)
        self._encode_audio(whole_frames=True)

    def _encode_audio(self, whole_frames):
        from .video import AAC_FRAME

        layout = "mono" if self.channels == 1 else "stereo"
        while self._pending.shape[1] >= AAC_FRAME or (not whole_frames and self._pending.shape[1]):
            chunk = self._pending[:, :AAC_FRAME]
            if chunk.shape[1] < AAC_FRAME:
                chunk = np.pad(chunk, ((0, 0), (0, AAC_FRAME - chunk.shape[1])))
            self._pending = self._pending[:, AAC_FRAME:]
            frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                                     layout=layout)
            frame.sample_rate = self.rate
            frame.pts, frame.time_base = self._audio_done, Fraction(1, self.rate)
            self._container.mux(self._audio.encode(frame))
            self._audio_done += AAC_FRAME

    def close(self):
        try:
            if self.frames:
                self._container.mux(self._video.encode(None))
            self._encode_audio(whole_frames=False)
            self._container.mux(self._audio.encode(None))
        finally:
            self._container.close()
