"""The live clock: each tick reads the newest audio, makes a frame, shows it, on time.

LiveLoop is the Show (pipeline.py) driven by the wall clock and a live audio source, with the
controls (controls.py), the work off the loop (jobs.py) and the size policy (size_policy.py)."""

import array
import collections
import dataclasses
import logging
import statistics
import time

import numpy as np

from ...compose import opencv
from ...outputs.contract import attach
from ..features import FeatureStage
from ..sizes import size_text
from .background import Background
from .controls import ControlsApplied
from .faults import maybe_fail
from .jobs import OffLoopWork, model_text
from .size_policy import SizePolicy

log = logging.getLogger("flowvj.show.live")

BLACKOUT_FADE_S = 0.5  # blackout fades to black (and back) over this long
PACING_MARGIN_S = 0.003  # a frame's work starts this much earlier than its recent work needs
LEAD_PERCENTILE, LEAD_FRAMES = 97, 60  # ... by this percentile of the work of the last this many frames


def _decoded(decode, z):
    """(the flow's frame, seconds the decode took): run in LiveLoop's decode thread."""
    started = time.perf_counter()
    maybe_fail("decode")
    frame = decode(z)
    return frame, time.perf_counter() - started


def _composed(compose, decoding, weights, layers):
    """(the frame at the output size, seconds its decode took, seconds the compose took): run in
    LiveLoop's compose thread, which takes each frame from the decode thread in order (a Future),
    so the decode of the next frame overlaps the compose of this one: on the 2-core dev VM at
    192x108 and 30 fps, decode then compose in one thread (~17 + ~10 ms) ran at 22.8 fps, p95
    50 ms. `weights` (the navigator's, a copy) and `layers` (the compositor's, of the set and size
    z was navigated on) travel with z; a failed decode or compose is a failed frame (the last
    good picture)."""
    frame, decode_s = decoding.result()
    started = time.perf_counter()
    frame = compose(frame, weights, layers)
    return frame, decode_s, time.perf_counter() - started


@dataclasses.dataclass
class _Making:
    """A live frame in the making: the slot it is shown in, when its audio was read, the time
    step it was navigated with, the audio block (for listeners), its Features (for the meters),
    how long reading and navigating took, and its decode (a Future of (the composed frame, seconds
    the decode took, seconds the compose took), or None: frozen, the last frame again)."""
    slot: float
    t_read: float
    front_s: float
    dt_s: float
    block: np.ndarray
    audio_s: float
    features: object
    decode: object
    bar_line: bool = False


class LiveLoop(ControlsApplied, OffLoopWork):
    """The live clock: each tick reads the newest audio (never a queue), makes a frame, shows it.

    The audio fed to the analyzer is exactly what was heard since the previous frame, measured on
    the source's own clock (the device's, for Playback); at most `max_block_s` seconds of it, so
    a stall can never build up a backlog. That cap is half a second, not one audio block: on a
    busy machine running at 10 fps each frame spans ~100 ms of audio, and a cap of 4096 samples
    (93 ms) threw a tenth of it away, which slowed the tempo the tracker heard by a tenth (117
    BPM for a 128 BPM track). Frames are paced to `fps` on the wall clock.

    Pacing: each frame has a slot on a fixed grid of 1/fps. Its work (read the audio, navigate,
    decode) starts `_lead_s` before the slot (the 97th percentile of the last 60 frames' work,
    plus PACING_MARGIN_S, up to two periods), and the finished frame is held until its slot, then
    shown. So the audience sees frames a period apart although the work per frame varies;
    showing each frame as soon as it was made passed that variation straight to the screen: on
    the browser path, where Chromium shares the two cores, the decode at 192x108 varied by ~8 ms
    and 5 % of the intervals ran past 40 ms at 30 fps (benchmarks/JOURNAL.md). The decode runs in a
    thread of its own (ONNX Runtime and torch release the GIL), so when the lead is over a
    period the next frame's work starts before this one is shown: a decode that now and then
    takes longer than a period (the other programs on the cores taking them for a while) still
    lands in its slot. The 97th percentile rather than the 90th: in 90 s of the browser path at
    192x108 the late frames (interval over 40 ms) fell from 2.6 % to 1.2 % of all, for ~5 ms
    more latency (46 -> 51 ms median). A frame shown late keeps the grid when it is less than a
    period late, else starts a new grid from itself. Beat events are predicted that much earlier
    (the analyzer's latency_s is --latency-ms plus the loop's own recent median latency), so
    they are seen on the beat the audience hears.

    Live controls all arrive on one ControlBus (control/bus.py), drained once per frame in this
    loop's own thread: the window's keys and the page's controls are posted to it here each
    frame, other inputs (OSC, MIDI) post from their own threads. Each change is announced: one
    log line and a caption in the meters (`notice`) the window and the page draw briefly.
      quit; next_mode; mode (a name); next_image (Navigator.next_image: each mode heads for the
      next image, cross-faded);
      temperature: the weighted mode's softmax temperature (kept for later switches to weighted);
      speed: a multiplier on the navigator's clock (the dt it is stepped with): 2 makes travel,
          morph relax, fades and following twice as fast, 0 freezes the picture; the analyzer and
          the frame pacing are unaffected;
      sensitivity: a gain on the levels the navigator sees (rms, rms_smooth, band energies, the
          kick/snare/hats/onset strengths and the flux); the meters show the levels after the gain.
      image_set: a name from `image_sets` (name -> list of image paths, None for the bundled
          demo images): the images are loaded and encoded in a background thread, so the frames
          go on meanwhile, then Navigator.set_images cross-fades to them.
      detail (0..2, or detail_down / detail_up: the window's [ and ] keys, 0.1 a press): the
          compositor's amount, the detail added at the output size (compose.py);
      brightness (0..1): a gain on the picture the audience sees; blackout (1/0, or
          toggle_blackout): fade to black over BLACKOUT_FADE_S and back; freeze (1/0, or
          toggle_freeze): hold the picture (the music is still heard, the tempo still followed).
    Anything else (an unknown name or set) is logged and ignored; the window's own
    toggle_meter / toggle_fullscreen / toggle_captions are left to the window.

    Outputs: each object in `outputs` keeps the contract of outputs/contract.py (show and close;
    hear, poll, pending_controls, update_controls, control_applied, handles/handle optional),
    bound once at the start (`attached`), so the loop calls plain methods each frame.

    Tempo from the DJ: `clock` (optional: Ableton Link, MIDI clock) has `state(now_s)` returning
    None while absent, else (tempo_bpm, beat_position): then its tempo and beats replace the
    audio tracker's in the Features (the beat fires when the position crosses a whole beat), and
    with `quantum` (beats per bar) changes of mode, image set and scene wait for the next bar
    line, so they land on the one.

    Generation size and frame rate: with `ladder` (generation sizes, smallest first: the floor
    up), a SizePolicy (size_policy.py) watches each frame's work and decides when to step the
    size down or up, or the frame rate down at the floor and back; the loop applies it. A new
    size (or one the performer asks for, the `gen_size` control) is built in the background (a
    new Generator, the images re-encoded), then swapped in with Navigator.resize_images: the
    picture stays where it is and only its resolution changes, with no stall.

    The compositor (compose.py, held by the Show): the decode thread decodes z and the compose
    thread, fed in order, composes the frame to the outputs' size (the navigator's weights of z,
    a copy, and the Show's detail layers of the state z was made in travel with it), so every
    output gets the frame at the show's out size and this thread only shades and hands it on.
    Image-set loads and size builds make the new layers in the background (from the originals, at
    the output size); they are swapped in with the latents and the generator. Freeze holds the composed frame.

    Work off the loop (background.py): image-set loads, size builds and scene-file writes run
    in threads, each keyed by the state it was made for (`_state`, bumped on every swap of the
    images or the size, and the request it answers); a result whose state has moved on is built
    again for the state as it is, one superseded by a newer request is dropped. Every way out of
    `run` joins those threads.
    """

    def __init__(self, show, source, outputs, fps=60.0, max_block_s=0.5, image_sets=None, bus=None,
                 ladder=(), late_window_s=3.0, clock=None, quantum=None, scenes=None, measured=None,
                 policy=None):
        from ...control import ControlBus

        self.show, self.source, self.outputs = show, source, list(outputs)
        self.attached = [attach(output) for output in self.outputs]    # outputs/contract.py
        self.fps, self.max_block_s = float(fps), float(max_block_s)
        self.image_sets = dict(image_sets or {})
        self.image_set = next(iter(self.image_sets), None)
        self.bus = bus if bus is not None else ControlBus()
        self._background = Background()
        self._state = 0                 # bumped whenever the images or the size change (see _swap)
        self._wanted_set = None         # (request number, name) of the newest image set asked for
        self._requests = 0
        self._wanted_size = None        # the generation size being built, or None
        self._generators = {}           # size -> the Generator last used there (jobs._build_size)
        self._queued = set()            # kinds of job asked for while one of that kind still ran:
                                        # one at a time each, so a storm of requests cannot pile
                                        # up threads (each size build is seconds of CPU)
        measured = dict(measured or {})     # size -> {"threads", "decode_ms"} measured at the start
        self._threads = {size: row["threads"] for size, row in measured.items()}
        self.ladder = [tuple(size) for size in ladder]
        if policy is None and self.ladder:
            policy = SizePolicy(self.ladder, tuple(show.gen_size), self.fps, floor=self.ladder[0],
                                window_s=late_window_s,
                                decode_ms={size: row["decode_ms"] for size, row in measured.items()})
        self.policy = policy
        self.step_downs = []            # (time_s, from "WxH", to "WxH"): the size's steps down
        self.size_changes, self.fps_changes = [], []    # [time_s, from, to], every change
        self.model_changes = []         # [time_s, from, to]: a scene's model swapped in (jobs.py)
        self.frame_ms, self.latency_ms = array.array("d"), array.array("d")
        self.compose_ms = array.array("d")  # each compose (ms), in the compose thread
        self.work_ms = collections.deque(maxlen=LEAD_FRAMES)
        self._shown_s = array.array("d")    # when each frame was shown, s since the start
        self.audio_samples = 0          # heard and analysed, all blocks together
        self.errors, self._error_lines = 0, {}      # failures survived; message -> last logged
        self.running = False
        self.stage = FeatureStage(clock, quantum)      # analysis, the DJ clock, the sensitivity gain
        self.speed, self.temperature = 1.0, None
        self.brightness, self.blackout, self.frozen = 1.0, False, False
        self._black = 0.0               # the blackout fade: 0 = picture, 1 = black
        self._last_frame = None         # the last frame drawn (before brightness), held by freeze
        self.notice, self.notice_id, self._notice_until = "", 0, 0.0
        self.quantum = self.stage.quantum
        self.scenes = dict(scenes or {})
        self.scene = None
        self._unsaved = {}              # scenes saved live, waiting for the file writer
        self._deferred = []             # (name, value, source) waiting for the next bar line
        self._started = time.perf_counter()

    def _navigate(self, block, dt_s):
        """The front of a frame: the features stage (show/features.py: analysis, the DJ clock,
        the sensitivity gain) and the Show's step of speed x dt_s. Returns (the Features, the
        latent to decode, or None while frozen: the last frame is shown again, the navigator's
        weights of that latent: a copy, for the compositor)."""
        self._take_finished()
        self.audio_samples += len(block)
        features = self.stage.process(self.show.analyzer, block, time.perf_counter())
        if self.frozen and self._last_frame is not None:
            return features, None, None
        z = self.show.step(features, dt_s * self.speed)
        return features, z, self.show.navigator.weights.copy()

    @property
    def sensitivity(self):
        """The gain on the levels the navigator sees (a control; kept by the features stage)."""
        return self.stage.sensitivity

    @sensitivity.setter
    def sensitivity(self, gain):
        self.stage.sensitivity = float(gain)

    def _next_frame(self, block, dt_s):
        """One frame made at once, in this thread: navigate, decode, compose, shade."""
        _, z, weights = self._navigate(block, dt_s)
        if z is not None:
            self._last_frame = self.show.compose(self.show.generator.decode(z), weights, self.show.layers)
        return self._shaded(self._last_frame, dt_s)

    def _shaded(self, frame, dt_s):
        """The frame as the audience sees it: brightness and the blackout fade applied. One
        OpenCV pass over uint8 (a 720p frame: ~1 ms; numpy's float round trip took several)."""
        step = dt_s / BLACKOUT_FADE_S
        self._black = min(1.0, self._black + step) if self.blackout else max(0.0, self._black - step)
        gain = self.brightness * (1.0 - self._black)
        if gain >= 1.0:
            return frame
        return opencv().convertScaleAbs(frame, alpha=gain)      # rounded, saturated to uint8

    def _meters(self, features=None):
        f = features or self.show.features or self.stage.heard
        if f is None:       # nothing heard yet (the first frame failed): meters with no levels
            from ...audio.analyzer import Analyzer

            f = Analyzer(n_bands=len(self.show.image_latents)).process(np.zeros(0, np.float32))
        recent = self.frame_ms[-30:]
        fps = 1000.0 / statistics.mean(recent) if recent else 0.0
        shown = time.perf_counter() < self._notice_until
        compositor = self.show.compositor
        return {"fps": fps, "frame_ms": recent[-1] if recent else 0.0,
                "tempo_bpm": f.tempo_bpm if f.tempo_bpm > 0 else None,
                "rms": f.rms_smooth, "bands": [float(b) for b in f.band_smooth],
                "gen_size": size_text(self.show.gen_size), "mode": self.show.navigator.mode_name,
                "beat": bool(getattr(f, "beat_event", f.beat)), "image_set": self.image_set,
                "scene": self.scene, "brightness": self.brightness,
                "blackout": self.blackout, "frozen": self.frozen,
                "detail": compositor.method if compositor is not None else None,
                "detail_amount": compositor.amount if compositor is not None else None,
                "out_size": size_text(self.show.out_size),
                "notice": self.notice if shown else "", "notice_id": self.notice_id}

    def run(self, duration_s=None):
        """Until quit, the track's end, or duration_s; returns the frame-time and latency stats.
        Nothing else ends it: a frame, an output, a control or a background job that fails is
        counted (`errors`), logged in one line, and the show goes on with the last good picture.
        Every way out stops the threads the loop started (the decode, the background jobs)."""
        from concurrent.futures import ThreadPoolExecutor

        self.attached = [attach(output) for output in self.outputs]    # as they are when the show starts
        if self._background.closed:     # a second run of the same loop
            self._background = Background()
        self.max_block = max(1, round(self.max_block_s * self.source.rate))
        self.show.use_sample_rate(self.source.rate)
        self.running = True
        self._last_audio_s, last_tick = self.source.read_latest(1)[1], time.perf_counter()
        self._last_read = self._started = started = last_tick
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="flowvj-decode")
        self._composer = ThreadPoolExecutor(1, thread_name_prefix="flowvj-compose")
        try:
            making = self._begin(last_tick)
            while self.running:
                # the next frame's work starts _lead_s before its slot: before this frame is
                # shown when the lead is over a period (its decode then overlaps this frame's wait)
                period = 1.0 / self.fps
                slot, lead = making.slot + period, self._lead_s(period)
                ahead = slot - lead <= making.slot
                if ahead:
                    time.sleep(max(0.0, slot - lead - time.perf_counter()))
                    following = self._begin(slot)
                now = self._present(making, last_tick)
                last_tick = now
                if getattr(self.source, "finished", False) or (duration_s and now - started >= duration_s):
                    break
                try:
                    self._adapt(now)
                except Exception as error:  # noqa: BLE001 - the show goes on at the size it has
                    self._fault("size policy", error)
                if not ahead:
                    if slot < now:      # shown over a period late: a new grid from this frame
                        slot = now + period
                    time.sleep(max(0.0, slot - lead - time.perf_counter()))
                    following = self._begin(slot)
                elif following.slot < now:
                    following.slot = now + period
                making = following
        finally:
            self._decoder.shutdown(wait=True, cancel_futures=True)
            self._composer.shutdown(wait=True, cancel_futures=True)
            self._background.close()
            self.write_scenes()     # scenes saved in the last moments: written before exit
        return self.stats()

    def _read(self):
        """The audio heard since the last frame (an empty block if the source failed)."""
        try:
            samples, audio_s = self.source.read_latest(self.max_block)
        except Exception as error:  # noqa: BLE001 - a frame of silence, not the end of the show
            self._fault("audio", error)
            return np.zeros((0,), np.float32), self._last_audio_s
        n = min(self.max_block, max(0, round((audio_s - self._last_audio_s) * self.source.rate)))
        self._last_audio_s = audio_s
        return samples[len(samples) - n:], audio_s

    def _begin(self, slot):
        """Read the newest audio, navigate, and hand the decode to the decode thread: a frame
        in the making, shown in `slot`."""
        block, audio_s = self._read()
        t_read = time.perf_counter()
        dt_s, self._last_read = t_read - self._last_read, t_read
        if self.latency_ms:         # beat events fire this much before the beat (see Pacing)
            own = statistics.median(self.latency_ms[-30:]) / 1000.0
            self.show.analyzer.latency_s = self.show.latency_s + own
        decode = features = None
        try:
            features, z, weights = self._navigate(block, dt_s)
            if z is not None:       # the generator and the layers of the state z was navigated in
                decoding = self._decoder.submit(_decoded, self.show.generator.decode, z)
                decode = self._composer.submit(_composed, self.show.compose, decoding, weights,
                                               self.show.layers)
        except Exception as error:  # noqa: BLE001 - the last good picture is shown again
            self._fault("navigation", error)
        return _Making(slot, t_read, time.perf_counter() - t_read, dt_s, block, audio_s, features,
                       decode, self.stage.bar_line)

    def _present(self, making, last_tick):
        """Wait for the frame's decode, hold it until its slot, show it, apply the controls;
        records its work, interval and latency; returns when it was shown (perf_counter)."""
        decode_s = compose_s = None
        if making.decode is not None:
            try:
                self._last_frame, decode_s, compose_s = making.decode.result()
            except Exception as error:  # noqa: BLE001 - the last good picture is shown again
                self._fault("decode", error)
        if self._last_frame is None:        # nothing drawn yet: black (at the outputs' size) until a frame is
            width, height = self.show.out_size
            self._last_frame = np.zeros((height, width, 3), np.uint8)
        frame = self._shaded(self._last_frame, making.dt_s)
        meters = self._meters(making.features) if making.features is not None else self._meters()
        time.sleep(max(0.0, making.slot - time.perf_counter()))       # held until its slot
        held = time.perf_counter()
        for output in self.attached:
            try:
                maybe_fail("output")
                output.hear(making.block, making.audio_s)
                output.show(frame, meters)
            except Exception as error:  # noqa: BLE001 - the other outputs and the show go on
                self._fault(output.name, error)
        self._drain_controls(bar_line=making.bar_line)
        now = time.perf_counter()
        # the work itself, not the wait for the decode thread: a wait measured as work would
        # lengthen the lead, start frames earlier, queue them more (a 10-minute run stepped
        # down from 192x108 to 128x72 on that feedback)
        work_ms = (making.front_s + (decode_s or 0.0) + (compose_s or 0.0) + now - held) * 1000.0
        self.work_ms.append(work_ms)
        if compose_s is not None:
            self.compose_ms.append(compose_s * 1000.0)
        if self.policy is not None:     # a frozen frame (no decode) restarts the policy's clocks
            try:       # the decode alone: the policy scales it by size, the compose's cost does not
                self.policy.observe(now - self._started, work_ms, None if decode_s is None else decode_s * 1000.0)
            except Exception as error:  # noqa: BLE001 - the show goes on at the size it has
                self._fault("size policy", error)
        self.frame_ms.append((now - last_tick) * 1000.0)
        self.latency_ms.append((now - making.t_read) * 1000.0)  # newest audio -> frame on screen
        self._shown_s.append(now - self._started)
        return now

    def _lead_s(self, period):
        """How long before its slot a frame's work starts (see Pacing in the class docstring):
        the LEAD_PERCENTILE of the last LEAD_FRAMES frames' work plus PACING_MARGIN_S, at most
        two periods (at once, until 5 frames have been timed)."""
        if len(self.work_ms) < 5:
            return period
        lead = float(np.percentile(self.work_ms, LEAD_PERCENTILE)) / 1000.0 + PACING_MARGIN_S
        return min(2.0 * period, lead)

    def stats(self):
        """The run's figures (the --stats JSON); a frame rate only when at least two frames
        were timed (one frame has no interval: 0, never an absurd figure). Besides the median
        interval, the frame rate in every whole second of the show (frames shown in it): its
        worst (`min_fps_1s`), its 5th percentile (`p5_fps`) and per minute (`fps_per_minute`),
        so that slow stretches show; a median of intervals read 27.5 fps where 285 frames in
        15 s were 19 fps (issue 25)."""
        intervals = sorted(self.frame_ms[1:])
        features = self.stage.heard or self.show.features
        shown = np.asarray(self._shown_s, np.float64)
        # whole seconds from the first frame shown (the start-up before it is not the show's
        # pace), the last, partial one left out
        per_second = np.bincount((shown - shown[0]).astype(np.int64))[:-1] if len(shown) else np.zeros(0)
        whole = len(self._shown_s) and self._shown_s[-1] > 0
        minutes = [round(float(per_second[m:m + 60].mean()), 2) for m in range(0, len(per_second), 60)
                   if len(per_second[m:m + 60]) >= 30]
        return {"frames": len(self.frame_ms),
                "median_fps": 1000.0 / statistics.median(intervals) if intervals else 0.0,
                "mean_fps": (len(self._shown_s) - 1) / self._shown_s[-1] if whole else 0.0,
                "min_fps_1s": float(per_second.min()) if len(per_second) else 0.0,
                "p5_fps": float(np.percentile(per_second, 5)) if len(per_second) else 0.0,
                "fps_per_minute": minutes,
                "p95_frame_ms": intervals[int(0.95 * (len(intervals) - 1))] if intervals else 0.0,
                "median_latency_ms": statistics.median(self.latency_ms) if self.latency_ms else 0.0,
                "tempo_bpm": float(features.tempo_bpm) if features is not None else 0.0,
                "bad_frames": self.show.generator.bad_frames,
                "errors": self.errors,
                "mode": self.show.navigator.mode_name,
                "audio_s": self.audio_samples / self.source.rate if self.source is not None else 0.0,
                "gen_size": size_text(self.show.gen_size),
                "out_size": size_text(self.show.out_size),
                "detail": self.show.compositor.method if self.show.compositor is not None else None,
                "detail_amount": self.show.compositor.amount if self.show.compositor is not None else None,
                "compose_ms": statistics.median(self.compose_ms) if self.compose_ms else 0.0,
                "fps": self.fps,
                "step_downs": [list(step) for step in self.step_downs],
                "size_changes": self.size_changes,
                "fps_changes": self.fps_changes,
                "model": model_text(self.model_name), "model_changes": self.model_changes,
                "controls_dropped": self.bus.dropped}
