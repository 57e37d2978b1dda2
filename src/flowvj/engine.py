"""The Engine: audio -> features -> navigator -> flow inverse -> upscale -> output, and its clock.

`Show` is the pipeline every path shares: one call per frame with the audio heard since the last
frame and the frame's duration. Only the clock differs: offline, frame i sits at t = i / fps and
takes exactly its slice of the track, so a render is deterministic for a seed; live
(`LiveLoop`), the wall clock and the audio source's latest samples drive the same calls.
"""

import array
import collections
import dataclasses
import logging
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

from .errors import UserError

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_IMAGES = ASSETS / "images"


MAX_FRAME = (7680, 4320)  # the largest output frame accepted (8K UHD)


def check_image_specs(specs, flag="--images"):
    """Refuse, before anything loads, what cannot be an image set: a missing path, a file that
    is not an image, a folder with no images in it. Returns the specs as Paths."""
    from .data import IMAGE_EXTENSIONS, _list_image_files

    expected = f"expected a folder of images or an image file ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    paths = [Path(spec) for spec in specs]
    for path in paths:
        if not path.exists():
            raise UserError(f"{flag} {path} does not exist; {expected}")
        if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UserError(f"{flag} {path} is not an image file; {expected}")
        if path.is_dir() and not _list_image_files(path.resolve()):
            raise UserError(f"{flag} {path} holds no images; {expected}")
    return paths


def load_show_images(specs, size):
    """The user's images: folders and/or files, any size and mode -> uint8 (N, H, W, 3),
    aspect-filled (scaled to cover, centre-cropped) to `size`: (width, height), or an int side.

    specs: list of paths; None means the bundled demo images.
    """
    from .data import load_image, load_image_folder

    if not specs:
        if not DEFAULT_IMAGES.is_dir():
            raise UserError(f"no bundled demo images at {DEFAULT_IMAGES} yet; pass --images DIR_OR_FILES")
        specs = [DEFAULT_IMAGES]
    images = []
    for spec in check_image_specs(specs):
        if spec.is_dir():
            images.extend(load_image_folder(spec, size=size).images)
        else:
            images.append(load_image(spec, size))
    return np.stack(images)


def resize_images(images, size):
    """uint8 (N, H, W, 3) images aspect-filled to `size` = (width, height): for re-encoding the
    loaded set at a smaller generation size without reading the files again."""
    from PIL import Image

    from .data import _fit_square

    return np.stack([np.asarray(_fit_square(Image.fromarray(image), size)) for image in images])


def demo_track(cache_dir=None):
    """The synthesised demo track (128 BPM, 2 minutes), written once to the cache as a wav."""
    from .atomic import atomic_path
    from .audio.synth import synth_track, write_track
    from .data import default_cache_dir

    path = default_cache_dir(cache_dir) / "demo-128bpm.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            write_track(tmp.with_suffix(".wav"), synth_track(bpm=128, duration_s=120.0, seed=0))
            tmp.with_suffix(".wav").replace(tmp)
    return path


class Show:
    """The shared per-frame pipeline: analyzer, navigator and generator, wired once.

    `images` are uint8 (N, H, W, 3) at the generation size `gen_size` = (W, H) (None: the
    model's own training size); they are encoded there, exactly, so the ends of every
    interpolation are the user's images at the show's own resolution.
    """

    def __init__(self, model, images, mode="explore", seed=0, sample_rate=44100, backend="onnx",
                 interpolation="slerp", gen_size=None, generator=None, precision="fp32", device="cpu",
                 latency_s=0.0, threads=None):
        from .audio.analyzer import Analyzer
        from .generator import Generator
        from .navigate import Navigator

        self.model, self.precision, self.device = model, precision, device
        self.generator = generator or Generator(model, size=gen_size, backend=backend, precision=precision,
                                                device=device, threads=threads)
        self.images = np.asarray(images)
        self.image_latents = self.generator.encode(self.images)
        # weighted mode reads one spectrum section per image; beat events lead by latency_s
        self.latency_s = float(latency_s)
        self.analyzer = Analyzer(sample_rate=sample_rate, n_bands=max(2, len(images)), latency_s=self.latency_s)
        self.sample_rate = sample_rate
        self.navigator = Navigator(self.image_latents, mode=mode, interpolation=interpolation, seed=seed)
        self.features = None

    @property
    def gen_size(self):
        """(width, height) the flow draws at."""
        _, height, width = self.generator.shape
        return width, height

    def use_sample_rate(self, rate):
        """A device may run at another rate than asked for: the analyzer follows it."""
        from .audio.analyzer import Analyzer

        if rate != self.sample_rate:
            self.analyzer = Analyzer(sample_rate=rate, n_bands=self.analyzer.n_bands, latency_s=self.latency_s)
            self.sample_rate = rate

    def next_latent(self, audio_block, dt_s):
        """Audio heard since the last frame -> the next frame's latent z (float32 (3, H, W)).

        Live, a frame can come before any new audio: the last Features then stand.
        """
        if len(audio_block) or self.features is None:
            self.features = self.analyzer.process(audio_block)
        return self.navigator.step(self.features, dt_s)

    def next_frame(self, audio_block, dt_s):
        """Audio heard since the last frame -> the next uint8 frame (H, W, 3) at the gen size."""
        return self.generator.decode(self.next_latent(audio_block, dt_s))


def frame_bounds(frame_index, fps, sample_rate, delay_s=0.0):
    """Sample range [a, b) of the audio an offline frame i (shown at t = i / fps) is drawn from.

    It ends half a frame after t plus `delay_s` (the analyzer's `flux_delay_s`, how long after an
    onset its flux is counted), so each onset moves the frame shown nearest to it, the frame
    metrics.onset_envelope gives it; frame 0 starts at 0. Integer bounds from absolute times, so
    the ranges tile the track without gaps or drift. Ending at t + 1/fps instead, as until
    2026-12-04, moved a third of the onsets to the frame before (benchmarks/README.md, "Issue 13,
    the motion flux at half hop").
    """
    def end(i):
        return max(0, round(((i + 0.5) / fps + delay_s) * sample_rate))
    return (0 if frame_index == 0 else end(frame_index - 1)), end(frame_index)


def size_text(size):
    return f"{size[0]}x{size[1]}"


def parse_size(text, flag):
    """"WxH" -> (W, H), positive whole numbers; a UserError naming `flag` otherwise."""
    import re

    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", str(text))
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise UserError(f"{flag} {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 192x108")
    return int(match[1]), int(match[2])


def check_frame_size(size, flag="--size", even=True):
    """(width, height) within MAX_FRAME; even only for video (H.264 yuv420p), not a window."""
    width, height = size
    if width > MAX_FRAME[0] or height > MAX_FRAME[1]:
        raise UserError(f"{flag} {size_text(size)}: frames larger than {size_text(MAX_FRAME)} are "
                        "not supported; expected e.g. 1280x720 or 1920x1080")
    if even and (width % 2 or height % 2):
        raise UserError(f"{flag} {size_text(size)}: a video needs even dimensions (H.264 yuv420p); "
                        "expected e.g. 1280x720")
    return size


def check_gen_fits_model(gen_size, model, flag="--gen-size"):
    """A size the model's squeezes cannot divide is one line naming the flag, not a traceback
    (hires has three scales, so its sides must be multiples of 4: 32x18 is refused, 32x16 runs)."""
    from .generator import check_size

    try:
        check_size(model, gen_size)
    except ValueError:
        step = 2 ** (model.config.num_scales - 1)
        raise UserError(f"{flag} {gen_size[0]}x{gen_size[1]}: this model ({model.config.num_scales} "
                        f"scales) draws sizes whose sides are multiples of {step}") from None


def check_gen_memory(gen_size, model, batch=1, flag="--gen-size"):
    """Refuse a generation size whose decode would not fit in this machine's memory, up front
    (a 100000x100000 frame was once killed by the kernel at 23 GB with nothing printed).

    Estimate: the widest s/t network holds a few feature maps of mid_channels floats per pixel
    (float32), plus the frame itself; a quarter of physical memory is the budget."""
    width, height = gen_size
    need = batch * width * height * (8 * model.config.mid_channels + 64) * 4
    try:
        budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        budget = 4 << 30
    if need > budget:
        raise UserError(f"{flag} {size_text(gen_size)}: decoding it needs about {need / 2**30:.1f} GiB, "
                        f"more than this machine's budget of {budget / 2**30:.1f} GiB; expected a "
                        "smaller size, e.g. 256x144")
    return gen_size


# render's default generation size: the largest rung of the live ladder (at the output's aspect)
# whose decode costs at most RENDER_GFLOP a frame (bench.conv_gflop), which keeps a 30 s 720p
# render near twice real time on the 2-core dev VM (benchmarks/resolution_targets.py): 128x72
# for the hires model, 32x18 for lite (whose 64x36 costs 1.84 GFLOP, ~70 ms a frame there).
RENDER_GFLOP = 0.5


def render_gen_size(model, output_size=(1280, 720)):
    """`render --gen-size auto`: the largest ladder size this model decodes within RENDER_GFLOP."""
    from .bench import conv_gflop, runnable

    sizes = runnable(model, scaled_ladder(output_size))
    per_pixel = conv_gflop(model, (1, 1))       # the count is exact per pixel: one trace, not one a size
    fitting = [s for s in sizes if per_pixel * s[0] * s[1] <= RENDER_GFLOP]
    return max(fitting or sizes[:1], key=lambda s: s[0] * s[1])


RENDER_BATCH = 8  # latents per decode call: the same in every engine, so frames are too


def _latent_batches(show, audio, fps, rate, n_frames, batch=RENDER_BATCH):
    """The whole track navigated in order (each latent depends on the one before), in batches."""
    zs = []
    for i in range(n_frames):
        a, b = frame_bounds(i, fps, rate, show.analyzer.flux_delay_s)
        zs.append(show.next_latent(audio[a:b], (b - a) / rate))
        if len(zs) == batch or i == n_frames - 1:
            yield np.stack(zs)
            zs = []


def render(track, out, *, images=None, model_path=None, mode="explore", size=(1280, 720), fps=30,
           duration_s=None, start_s=0.0, seed=0, crf=18, encoder_preset="superfast",
           gen_size="auto", workers=1, engine="inline", precision="fp32", device="cpu",
           show_progress=True):
    """Render a music video of `track` to `out` (H.264 + AAC, the track muxed in); returns frames.

    The flow draws at `gen_size` ((width, height); "auto": render_gen_size; None: the model's own
    32x32) with `model_path` (None: default_model, hires on a CPU) and each frame
    is upscaled to `size`. The track is navigated in this process, in order; the latents are
    decoded in batches of RENDER_BATCH by `workers` on `engine` (decode_pool.py: inline, local
    processes or Ray), then upscaled and encoded here in order: the same frames on every engine.
    """
    from .decode_pool import ENGINES, open_pool

    if engine not in ENGINES:
        raise UserError(f"--decode-engine {engine}: expected one of {', '.join(ENGINES)}")
    import torch

    from .audio.sources import FileSource
    from .flow import load_model
    from .outputs.video import VideoWriter, check_fps, check_size
    from .progress import ProgressReport
    from .upscale import upscale

    size, fps = check_frame_size(check_size(size)), float(check_fps(fps))
    if start_s < 0:
        raise UserError(f"--start {start_s:g}: expected a time in seconds >= 0")
    if duration_s is not None and duration_s <= 0:
        raise UserError(f"--duration {duration_s:g}: expected a positive number of seconds")
    torch.set_num_threads(1)  # per-frame inference: one thread (more was slower on a busy machine)
    source = FileSource(track)
    first = int(round(start_s * source.rate))
    if first >= len(source.samples):
        raise UserError(f"--start {start_s:g} s is past the end of {track} ({source.duration_s:.1f} s)")
    last = len(source.samples) if duration_s is None else min(len(source.samples),
                                                               first + int(round(duration_s * source.rate)))
    audio = source.samples[first:last]
    n_frames = max(1, math.floor(len(audio) / source.rate * fps))
    from .generator import resolve_device

    device = resolve_device(device)
    model_path = model_path or default_model(device)     # decode workers load the same model
    model = load_model(model_path)
    if gen_size == "auto":
        gen_size = render_gen_size(model, size)
    gen_size = tuple(gen_size) if gen_size else (model.config.image_size,) * 2
    check_gen_fits_model(gen_size, model)
    check_gen_memory(gen_size, model)
    show = Show(model, load_show_images(images, gen_size), mode=mode, seed=seed,
                sample_rate=source.rate, gen_size=gen_size, precision=precision, device=device)
    report = ProgressReport("render", n_frames, unit="frame") if show_progress else None
    finished = False
    try:
        with VideoWriter(out, size=size, fps=fps, audio=audio, audio_rate=source.rate, crf=crf,
                         preset=encoder_preset) as video, \
                open_pool(model_path, gen_size, workers, engine, generator=show.generator,
                          precision=precision, device=device) as pool:
            for frames in pool.map(_latent_batches(show, audio, fps, source.rate, n_frames)):
                for frame in frames:
                    video.write(upscale(frame, size))
                if report:
                    report.update(len(frames), t=f"{video.duration_s:.1f}s")
        finished = True
    except OSError as error:  # a full disk, a read-only folder: the temporary file is gone
        raise UserError(f"-o {out}: cannot write the video ({error.strerror or error})") from None
    finally:
        if report:
            report.close(final=finished)
    return n_frames


NOTICE_S = 2.5  # how long a control change's caption stays on screen
BLACKOUT_FADE_S = 0.5  # blackout fades to black (and back) over this long
PACING_MARGIN_S = 0.003  # a frame's work starts this much earlier than its recent work needs
MAX_SCENES = 99  # scenes a show keeps (saving more is refused): keys 1-9, the page's list, the file
ERROR_LOG_S = 5.0  # a failure's line is logged again at most this often
LEAD_PERCENTILE, LEAD_FRAMES = 97, 60  # ... by this percentile of the work of the last this many frames


def _timed(decode, z):
    """(decode(z), how long it took in s): run in LiveLoop's decode thread."""
    from .faults import maybe_fail

    started = time.perf_counter()
    maybe_fail("decode")
    frame = decode(z)
    return frame, time.perf_counter() - started


@dataclasses.dataclass
class _Making:
    """A live frame in the making: the slot it is shown in, when its audio was read, the time
    step it was navigated with, the audio block (for listeners), its Features (for the meters),
    how long reading and navigating took, and its decode (a Future of (frame, seconds it took),
    or None: frozen, the last frame again)."""
    slot: float
    t_read: float
    front_s: float
    dt_s: float
    block: np.ndarray
    audio_s: float
    features: object
    decode: object
    bar_line: bool = False


class LiveLoop:
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
    and 5 % of the intervals ran past 40 ms at 30 fps (benchmarks/README). The decode runs in a
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
      brightness (0..1): a gain on the picture the audience sees; blackout (1/0, or
          toggle_blackout): fade to black over BLACKOUT_FADE_S and back; freeze (1/0, or
          toggle_freeze): hold the picture (the music is still heard, the tempo still followed).
    Anything else (an unknown name or set) is logged and ignored; the window's own
    toggle_meter / toggle_fullscreen / toggle_captions are left to the window.

    Outputs and listeners: each object in `outputs` may have any of
      show(frame, meters)           the frame the audience sees and the meters, every frame;
      poll() / pending_controls()   controls to post on the bus (window keys, the page);
      hear(samples, audio_time_s)   the audio analysed this frame (a recorder muxes it in);
      control_applied(name, value, caption)   after each control the loop applied (MIDI learn
                                    arms on it; telemetry reports state from it);
      update_controls(values)       the controls' values after any change (the page shows them);
      handles(name) / handle(name, value)   a control of the listener's own that the loop does
                                    not know (e.g. "midi_learn"): applied in the loop's thread,
                                    handle returns the caption (or None).

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

    Work off the loop (background.py): image-set loads, size builds and scene-file writes run
    in threads, each keyed by the state it was made for (`_state`, bumped on every swap of the
    images or the size, and the request it answers); a result whose state has moved on is built
    again for the state as it is, one superseded by a newer request is dropped. Every way out of
    `run` joins those threads.
    """

    LEVELS = ("rms", "rms_smooth", "band_energy", "band_smooth", "onset_strength", "kick", "snare", "hats", "flux")
    SILENT_ACTIONS = ("toggle_meter", "toggle_fullscreen", "toggle_captions")

    def __init__(self, show, source, outputs, fps=60.0, max_block_s=0.5, image_sets=None, bus=None,
                 ladder=(), late_window_s=3.0, clock=None, quantum=None, scenes=None, measured=None,
                 policy=None):
        from .background import Background
        from .control import ControlBus

        self.show, self.source, self.outputs = show, source, list(outputs)
        self.fps, self.max_block_s = float(fps), float(max_block_s)
        self.image_sets = dict(image_sets or {})
        self.image_set = next(iter(self.image_sets), None)
        self.bus = bus if bus is not None else ControlBus()
        self._background = Background()
        self._state = 0                 # bumped whenever the images or the size change (see _swap)
        self._wanted_set = None         # (request number, name) of the newest image set asked for
        self._requests = 0
        self._wanted_size = None        # the generation size being built, or None
        self._queued = set()            # kinds of job asked for while one of that kind still ran:
                                        # one at a time each, so a storm of requests cannot pile
                                        # up threads (each size build is seconds of CPU)
        measured = dict(measured or {})     # size -> {"threads", "decode_ms"} measured at the start
        self._threads = {size: row["threads"] for size, row in measured.items()}
        self.ladder = [tuple(size) for size in ladder]
        if policy is None and self.ladder:
            from .size_policy import SizePolicy

            policy = SizePolicy(self.ladder, tuple(show.gen_size), self.fps, floor=self.ladder[0],
                                window_s=late_window_s,
                                decode_ms={size: row["decode_ms"] for size, row in measured.items()})
        self.policy = policy
        self.step_downs = []            # (time_s, from "WxH", to "WxH"): the size's steps down
        self.size_changes, self.fps_changes = [], []    # [time_s, from, to], every change
        self.frame_ms, self.latency_ms = array.array("d"), array.array("d")
        self.work_ms = collections.deque(maxlen=LEAD_FRAMES)
        self._shown_s = array.array("d")    # when each frame was shown, s since the start
        self.audio_samples = 0          # heard and analysed, all blocks together
        self.errors, self._error_lines = 0, {}      # failures survived; message -> last logged
        self.running = False
        self.speed, self.sensitivity, self.temperature = 1.0, 1.0, None
        self.brightness, self.blackout, self.frozen = 1.0, False, False
        self._black = 0.0               # the blackout fade: 0 = picture, 1 = black
        self._last_frame = None         # the last frame drawn (before brightness), held by freeze
        self.notice, self.notice_id, self._notice_until = "", 0, 0.0
        self._bar_line = False
        self._heard = None      # the analyzer's Features before the sensitivity gain
        self.clock, self.quantum = clock, (float(quantum) if quantum else None)
        self.scenes = dict(scenes or {})
        self.scene = None
        self._unsaved = {}              # scenes saved live, waiting for the file writer
        self._deferred = []             # (name, value, source) waiting for the next bar line
        self._clock_beat = None         # the clock's beat position at the last frame
        self._started = time.perf_counter()

    # -- controls -------------------------------------------------------------------------------

    def controls(self):
        """The live controls' current values, as the page shows them."""
        values = {"mode": self.show.navigator.mode_name, "speed": self.speed,
                  "sensitivity": self.sensitivity, "brightness": self.brightness,
                  "blackout": int(self.blackout), "freeze": int(self.frozen)}
        if self.temperature:
            values["temperature"] = self.temperature
        if self.image_set is not None:
            values["image_set"] = self.image_set
        learners = [o for o in self.outputs if getattr(o, "handles", lambda name: False)("midi_learn")]
        values["midi_learn"] = getattr(learners[0], "armed", "") if learners else ""   # "": not armed
        return values

    def _apply(self, action, value=None, source=""):
        """Apply one control; returns the caption announcing it, or None if nothing changed.
        A control that fails is one line and an `errors` count, never the end of the show."""
        from .faults import maybe_fail
        from .navigate import MODES

        names, navigator = list(MODES), self.show.navigator
        try:
            maybe_fail("control")
            if action == "quit":
                self.running = False
                return None
            if action == "next_mode":
                self._set_mode(names[(names.index(navigator.mode_name) + 1) % len(names)])
                return f"mode: {navigator.mode_name}"
            if action == "mode" and value in MODES:
                self._set_mode(value)
                return f"mode: {value}"
            if action == "next_image":
                navigator.next_image()
                return "next image"
            if action == "temperature":
                self.temperature = navigator.set_temperature(float(value))
                return f"temperature: {self.temperature:.2f}"
            if action in ("speed", "sensitivity") and float(value) >= 0 and math.isfinite(float(value)):
                setattr(self, action, float(value))
                return f"{action}: {float(value):.2f}x"
            if action == "brightness" and 0.0 <= float(value) <= 1.0:
                self.brightness = float(value)
                return f"brightness: {self.brightness:.2f}"
            if action in ("blackout", "toggle_blackout"):
                self.blackout = (not self.blackout) if action == "toggle_blackout" else bool(int(value))
                return "blackout" if self.blackout else "blackout off"
            if action in ("freeze", "toggle_freeze"):
                self.frozen = (not self.frozen) if action == "toggle_freeze" else bool(int(value))
                return "freeze" if self.frozen else "freeze off"
            if action == "image_set":
                if value not in self.image_sets:
                    offered = ", ".join(map(str, self.image_sets)) or "none (see --image-sets)"
                    return f"no image set {value!r}; offered: {offered}"
                if value == self.image_set and self._wanted_set is None:
                    return None         # already showing: encoding it again would only cost time
                self._want_image_set(value)
                return f"image set: {value} (loading)"
            if action == "gen_size":
                return self._want_size(value)
            if action in ("scene", "save_scene"):   # keys 1-9 send the scene's place (an int)
                return self._scene_control(action, value)
            handler = next((o for o in self.outputs if getattr(o, "handles", lambda name: False)(action)), None)
            if handler is not None:     # a control of a listener's own (MIDI learn's "midi_learn")
                return handler.handle(action, value)
            if action == "midi_learn":  # no listener takes it: say why, on the page and the window
                return "MIDI learn needs a MIDI controller: start the show with --midi-in NAME"
            if action not in self.SILENT_ACTIONS:
                log.info("live: ignored control %r = %r", action, value)
        except (UserError, TypeError, ValueError) as error:
            log.warning("live: ignored control %r = %r: %s", action, value, error)
        except Exception as error:  # noqa: BLE001 - one control must never end the show
            self._fault(f"control {action}", error)
        return None

    def _fault(self, where, error):
        """A failure the show survives: counted in `errors`, one line in the terminal (the same
        line at most once per ERROR_LOG_S, with how many times it happened meanwhile)."""
        self.errors += 1
        line = f"live: {where} failed, the show goes on: {type(error).__name__}: {error}".splitlines()[0]
        now = time.perf_counter()
        last, repeats = self._error_lines.get(line, (None, 0))
        if last is None or now - last >= ERROR_LOG_S:
            log.error("%s%s", line, f" (and {repeats} more times)" if repeats else "")
            self._error_lines[line] = (now, 0)
        else:
            self._error_lines[line] = (last, repeats + 1)
        if len(self._error_lines) > 256:        # bounded, whatever the messages
            self._error_lines.clear()

    def announce(self, text):
        """One line in the terminal and a caption on screen (window and page) for a while."""
        log.info("%s", text)
        self.notice, self.notice_id = text, self.notice_id + 1
        self._notice_until = time.perf_counter() + NOTICE_S
        for output in self.outputs:
            update = getattr(output, "update_controls", None)
            if update is not None:
                update(self.controls())

    QUANTISED = ("mode", "next_mode", "image_set", "scene")

    def _drain_controls(self, bar_line=False):
        """Post the outputs' controls on the bus, then apply everything on it; with a clock and a
        quantum, bar-quantised changes wait in _deferred for the next bar line."""
        for output in self.outputs:
            try:
                for action in getattr(output, "poll", lambda: [])():
                    name = str(action.value if hasattr(action, "value") else action)
                    if name.startswith("scene:"):       # keys 1-9: the scene at that place in the file
                        self.bus.post("scene", int(name[6:]), source="key")
                        continue
                    self.bus.post(name, source="key")
                for name, value in getattr(output, "pending_controls", lambda: [])():
                    self.bus.post(name, value, source="page")
            except Exception as error:  # noqa: BLE001 - one output's failure must not end the show
                self._fault(f"{type(output).__name__} controls", error)
        events = [(e.name, e.value, e.source) for e in self.bus.drain()]
        if bar_line:
            events, self._deferred = self._deferred + events, []
        quantise = self.quantum is not None and self._clock_beat is not None
        for name, value, source in events:
            if quantise and not bar_line and name in self.QUANTISED:
                self._deferred.append((name, value, source))
                continue
            caption = self._apply(name, value, source)
            if caption:
                self.announce(caption)
                for output in self.outputs:
                    applied = getattr(output, "control_applied", None)
                    if applied is not None:
                        try:
                            applied(name, value, caption)
                        except Exception as error:  # noqa: BLE001 - as above
                            self._fault(f"{type(output).__name__} listener", error)

    # -- work off the loop (background.py): each job keyed by the state it was made for --------

    def _want_image_set(self, name):
        """Load and encode an image set in the background; only the newest request is ever used."""
        self._requests += 1
        self._wanted_set = (self._requests, name)
        self._start_image_set()

    def _start_image_set(self):
        if self._background.busy("images"):     # one load at a time; the newest starts after it
            self._queued.add("images")
            return
        number, name = self._wanted_set
        show = self.show
        self._background.start("images", (number, self._state), self._load_image_set,
                               list(self.image_sets[name] or []) or None, show.generator, show.gen_size)

    @staticmethod
    def _load_image_set(specs, generator, size):
        images = load_show_images(specs, size)
        return generator.encode(images), images

    def _want_size(self, value):
        """The `gen_size` control ("WxH"): build that generation size in the background and swap
        it in (a performer's choice, or the size policy's); the caption, or None."""
        size = check_frame_size(parse_size(value, "gen_size"), flag="gen_size")
        if self.policy is not None and size not in self.policy.ladder:
            raise UserError(f"gen_size {size_text(size)}: expected one of "
                            f"{', '.join(map(size_text, self.policy.ladder))} (the sizes this show "
                            "steps between, from --min-gen-size up)")
        check_gen_fits_model(size, self.show.model, flag="gen_size")
        check_gen_memory(size, self.show.model, flag="gen_size")
        if size == tuple(self.show.gen_size):
            if self._wanted_size is None:
                return None
            self._wanted_size = None        # a build under way is dropped when it arrives
            if self.policy is not None:
                self.policy.moved(time.perf_counter() - self._started, "size", size)
            return f"generation size stays {size_text(size)}"
        self._wanted_size = size
        self._start_size()
        return f"generation size {size_text(self.show.gen_size)} -> {size_text(size)} (building)"

    def _start_size(self):
        if self._background.busy("size"):       # one build at a time; the newest starts after it
            self._queued.add("size")
            return
        show = self.show
        self._background.start("size", (self._wanted_size, self._state), self._build_size, show.model,
                               self._wanted_size, show.precision, show.device,
                               self._threads.get(self._wanted_size), show.images)

    @staticmethod
    def _build_size(model, size, precision, device, threads, images):
        from .generator import Generator

        generator = Generator(model, size=size, precision=precision, device=device, threads=threads)
        images = resize_images(images, size)
        return generator, generator.encode(images), images

    def _save_scenes(self):
        """Write the scenes saved live to the --scenes file, one writer at a time: saves that
        arrive while it writes are coalesced into its next write, so the file work never runs
        in the frame loop and never queues up, whatever the rate (issue 25: 20 saves a second
        took the page from 30 to 0.5 fps when each one rewrote the file in the loop)."""
        if not self._unsaved or self._background.busy("save"):
            return
        from .control.scenes import save_scenes

        unsaved, self._unsaved = list(self._unsaved.values()), {}
        self._background.start("save", None, save_scenes, self.scene_file, unsaved)

    def _take_finished(self):
        """Apply the background jobs that finished, where they still fit the show; restart the
        ones whose state moved on while they ran, if they are still wanted."""
        for done in self._background.take():
            try:
                if done.error is not None:
                    self._job_failed(done)
                elif done.kind == "images":
                    self._arrived_images(done)
                elif done.kind == "size":
                    self._arrived_size(done)
            except Exception as error:  # noqa: BLE001 - one job's failure must not end the show
                self._fault(f"background {done.kind}", error)
        for kind, wanted, start in (("images", self._wanted_set, self._start_image_set),
                                    ("size", self._wanted_size, self._start_size)):
            if kind in self._queued and not self._background.busy(kind):
                self._queued.discard(kind)
                if wanted is not None:      # for the state as it is now
                    start()
        self._save_scenes()

    def _job_failed(self, done):
        if done.kind == "images" and self._wanted_set and done.key[0] == self._wanted_set[0]:
            name, self._wanted_set = self._wanted_set[1], None
            if isinstance(done.error, UserError):
                self.errors += 1
                log.error("live: image set %r not loaded: %s", name, done.error)
                self.announce(f"image set {name}: not loaded (see the terminal)")
                return
        elif done.kind == "size" and done.key[0] == self._wanted_size:
            self._wanted_size = None
            if self.policy is not None:
                self.policy.moved(time.perf_counter() - self._started, "size", tuple(self.show.gen_size))
        self._fault(f"background {done.kind}", done.error)

    def _arrived_images(self, done):
        number, state = done.key
        if self._wanted_set is None or number != self._wanted_set[0]:
            return                          # a newer request came after it: dropped
        if state != self._state:            # the size changed while it loaded: load again
            self._start_image_set()
            return
        name, self._wanted_set = self._wanted_set[1], None
        latents, images = done.result
        self.show.navigator.set_images(latents)
        self._swap(latents=latents, images=images)
        self.image_set = name
        if self.temperature:
            self.show.navigator.set_temperature(self.temperature)
        self.announce(f"image set: {name} ({len(latents)} images)")

    def _arrived_size(self, done):
        size, state = done.key
        if size != self._wanted_size:
            return                          # another size was asked for since: dropped
        if state != self._state:            # the images changed while it built: build again
            self._start_size()
            return
        self._wanted_size = None
        generator, latents, images = done.result
        before = size_text(self.show.gen_size)
        generator.bad_frames += self.show.generator.bad_frames
        self.show.navigator.resize_images(latents)
        self.show.generator = generator
        self._swap(latents=latents, images=images)
        self.work_ms.clear()
        now_s = round(time.perf_counter() - self._started, 2)
        after = size_text(size)
        self.size_changes.append([now_s, before, after])
        if size[0] * size[1] < _area(before):
            self.step_downs.append((now_s, before, after))
        if self.policy is not None:
            self.policy.moved(now_s, "size", size)
        self.announce(f"generation size {before} -> {after}")

    def _swap(self, latents, images):
        """New latents and images in the Show: every job made for the old ones is now stale."""
        self.show.image_latents, self.show.images = latents, images
        self._state += 1

    def _scene_control(self, action, name):
        """Recall a scene (by name, or by its place from 1) or save the show's state as one, in
        the --scenes file (`scene_file`); see control/scenes.py. Returns the caption."""
        from .control.scenes import image_set_name, scene_now
        from .navigate import lerp, slerp

        navigator = self.show.navigator
        if action == "save_scene":
            scene = scene_now(name, self.image_sets.get(self.image_set), navigator.mode_name,
                              navigator.interpolation, self.temperature, self.speed,
                              self.sensitivity, self.brightness, self.show.gen_size)
            if getattr(self, "scene_file", None) is None:
                raise UserError("no --scenes FILE to save the scene in")
            if scene.name not in self.scenes and len(self.scenes) >= MAX_SCENES:
                raise UserError(f"{self.scene_file} holds {MAX_SCENES} scenes already, the most a show keeps")
            self.scenes[scene.name] = self._unsaved[scene.name] = scene   # written off the loop
            self.scene = scene.name
            return f"scene saved: {scene.name}"
        names = list(self.scenes)
        if isinstance(name, int) and 1 <= name <= len(names):
            name = names[name - 1]
        scene = self.scenes.get(name) if isinstance(name, str) else None
        if scene is None:
            log.info("live: no scene %r (scenes: %s)", name, ", ".join(names) or "none")
            return None
        if scene.interpolation and scene.interpolation != navigator.interpolation:
            navigator.interpolation = scene.interpolation
            navigator.interpolate = slerp if scene.interpolation == "slerp" else lerp
        if scene.temperature is not None:
            self.temperature = navigator.set_temperature(scene.temperature)
        restyled = navigator.interpolate is not navigator.mode.interpolate   # the mode's own is old
        if (scene.mode and scene.mode != navigator.mode_name) or restyled:
            self._set_mode(scene.mode or navigator.mode_name)      # cross-faded
        for key in ("speed", "sensitivity", "brightness"):
            if getattr(scene, key) is not None:
                setattr(self, key, getattr(scene, key))
        image_set = image_set_name(self.image_sets, scene)
        if image_set is not None and image_set != self.image_set:
            self._want_image_set(image_set)
        self.scene = scene.name
        kept = scene.gen_size and tuple(scene.gen_size) != tuple(self.show.gen_size)
        return f"scene: {scene.name}" + (f" (drawn at {size_text(self.show.gen_size)}, not its "
                                         f"{size_text(scene.gen_size)})" if kept else "")

    def _set_mode(self, name):
        options = {"temperature": self.temperature} if name == "weighted" and self.temperature else {}
        self.show.navigator.set_mode(name, **options)

    # -- generation size and frame rate (size_policy.py decides, the loop applies) --------------

    def _adapt(self, now):
        """Feed the size policy this frame's timing and apply what it decides: a generation size
        (built in the background, swapped in when ready) or a frame rate (at once)."""
        if self.policy is None or self._wanted_size is not None:
            return
        now_s = now - self._started
        decision = self.policy.decide(now_s)
        if decision is None:
            return
        kind, value = decision
        if kind == "fps":
            before, self.fps = self.fps, float(value)
            self.fps_changes.append([round(now_s, 2), before, self.fps])
            self.policy.moved(now_s, "fps", self.fps)
            self.announce(f"frame rate {before:g} -> {self.fps:g} fps "
                          f"({'frames ran late' if self.fps < before else 'headroom returned'})")
        elif kind == "size" and tuple(value) != tuple(self.show.gen_size):
            self._wanted_size = tuple(value)
            self._start_size()
            log.info("live: generation size %s -> %s (%s): building", size_text(self.show.gen_size),
                     size_text(value), "frames ran late" if _area(value) < _area(self.show.gen_size)
                     else "headroom returned")

    # -- the loop -------------------------------------------------------------------------------

    def _clocked(self, features, now_s):
        """Features with the DJ's clock in charge of tempo and beats (see the class docstring);
        returns (features, whether a bar line passed this frame)."""
        state = self.clock.state(now_s) if self.clock is not None else None
        if state is None:
            self._clock_beat = None
            return features, False
        tempo_bpm, position = state
        previous, self._clock_beat = self._clock_beat, position
        beat = previous is not None and math.floor(position) > math.floor(previous)
        bar = (previous is not None and self.quantum is not None
               and math.floor(position / self.quantum) > math.floor(previous / self.quantum))
        changes = {"tempo_bpm": float(tempo_bpm), "beat": beat, "beat_phase": position % 1.0}
        if hasattr(features, "beat_event"):
            changes["beat_event"] = beat
        return dataclasses.replace(features, **changes), bar

    def _navigate(self, block, dt_s):
        """The front of a frame: Show.next_latent with the live controls. The navigator sees the
        Features with the sensitivity gain (set as show.features, which next_latent keeps when
        given no new audio) and steps speed x dt_s. Returns the latent to decode, or None while
        frozen (the last frame is shown again)."""
        show = self.show
        self._take_finished()
        if len(block) or self._heard is None:
            self._heard = show.analyzer.process(block)
            self.audio_samples += len(block)
        self._heard, self._bar_line = self._clocked(self._heard, time.perf_counter())
        gain = self.sensitivity
        show.features = self._heard if gain == 1.0 else dataclasses.replace(
            self._heard, **{name: getattr(self._heard, name) * gain for name in self.LEVELS})
        if self.frozen and self._last_frame is not None:
            return None
        return show.next_latent(block[:0], dt_s * self.speed)

    def _next_frame(self, block, dt_s):
        """One frame made at once, in this thread: navigate, decode, shade."""
        z = self._navigate(block, dt_s)
        if z is not None:
            self._last_frame = self.show.generator.decode(z)
        return self._shaded(self._last_frame, dt_s)

    def _shaded(self, frame, dt_s):
        """The frame as the audience sees it: brightness and the blackout fade applied."""
        step = dt_s / BLACKOUT_FADE_S
        self._black = min(1.0, self._black + step) if self.blackout else max(0.0, self._black - step)
        gain = self.brightness * (1.0 - self._black)
        if gain >= 1.0:
            return frame
        return (frame.astype(np.float32) * gain + 0.5).astype(np.uint8)

    def _meters(self, features=None):
        f = features if features is not None else self.show.features
        recent = self.frame_ms[-30:]
        fps = 1000.0 / statistics.mean(recent) if recent else 0.0
        shown = time.perf_counter() < self._notice_until
        return {"fps": fps, "frame_ms": recent[-1] if recent else 0.0,
                "tempo_bpm": f.tempo_bpm if f.tempo_bpm > 0 else None,
                "rms": f.rms_smooth, "bands": [float(b) for b in f.band_smooth],
                "gen_size": size_text(self.show.gen_size), "mode": self.show.navigator.mode_name,
                "beat": bool(getattr(f, "beat_event", f.beat)), "image_set": self.image_set,
                "scene": self.scene, "brightness": self.brightness,
                "blackout": self.blackout, "frozen": self.frozen,
                "notice": self.notice if shown else "", "notice_id": self.notice_id}

    def run(self, duration_s=None):
        """Until quit, the track's end, or duration_s; returns the frame-time and latency stats.
        Nothing else ends it: a frame, an output, a control or a background job that fails is
        counted (`errors`), logged in one line, and the show goes on with the last good picture.
        Every way out stops the threads the loop started (the decode, the background jobs)."""
        from concurrent.futures import ThreadPoolExecutor

        self.max_block = max(1, round(self.max_block_s * self.source.rate))
        self.show.use_sample_rate(self.source.rate)
        self.running = True
        self._last_audio_s, last_tick = self.source.read_latest(1)[1], time.perf_counter()
        self._last_read = self._started = started = last_tick
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="flowvj-decode")
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
            self._background.close()
            self.write_scenes()     # scenes saved in the last moments: written before exit
        return self.stats()

    def write_scenes(self):
        """Write the scenes saved live and not yet written, now, in this thread (at the end of
        the show; during it, _save_scenes writes them in the background)."""
        from .control.scenes import save_scenes

        unsaved, self._unsaved = list(self._unsaved.values()), {}
        if unsaved:
            try:
                save_scenes(self.scene_file, unsaved)
            except UserError as error:
                log.error("live: %s", error)

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
        decode = None
        try:
            z = self._navigate(block, dt_s)
            if z is not None:
                decode = self._decoder.submit(_timed, self.show.generator.decode, z)
        except Exception as error:  # noqa: BLE001 - the last good picture is shown again
            self._fault("navigation", error)
        return _Making(slot, t_read, time.perf_counter() - t_read, dt_s, block, audio_s, self.show.features,
                       decode, self._bar_line)

    def _present(self, making, last_tick):
        """Wait for the frame's decode, hold it until its slot, show it, apply the controls;
        records its work, interval and latency; returns when it was shown (perf_counter)."""
        from .faults import maybe_fail

        decode_s = None
        if making.decode is not None:
            try:
                self._last_frame, decode_s = making.decode.result()
            except Exception as error:  # noqa: BLE001 - the last good picture is shown again
                self._fault("decode", error)
        if self._last_frame is None:        # nothing drawn yet: black until a frame is
            width, height = self.show.gen_size
            self._last_frame = np.zeros((height, width, 3), np.uint8)
        frame = self._shaded(self._last_frame, making.dt_s)
        meters = self._meters(making.features) if making.features is not None else self._meters()
        time.sleep(max(0.0, making.slot - time.perf_counter()))       # held until its slot
        held = time.perf_counter()
        for output in self.outputs:
            try:
                maybe_fail("output")
                if hasattr(output, "hear"):
                    output.hear(making.block, making.audio_s)
                if hasattr(output, "show"):
                    output.show(frame, meters)
            except Exception as error:  # noqa: BLE001 - the other outputs and the show go on
                self._fault(type(output).__name__, error)
        self._drain_controls(bar_line=making.bar_line)
        now = time.perf_counter()
        # the work itself, not the wait for the decode thread: a wait measured as work would
        # lengthen the lead, start frames earlier, queue them more (a 10-minute run stepped
        # down from 192x108 to 128x72 on that feedback)
        work_ms = (making.front_s + (decode_s or 0.0) + now - held) * 1000.0
        self.work_ms.append(work_ms)
        if self.policy is not None:     # a frozen frame (no decode) restarts the policy's clocks
            self.policy.observe(now - self._started, work_ms, None if decode_s is None else decode_s * 1000.0)
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
        features = self.show.features
        per_second = np.bincount(np.asarray(self._shown_s, np.float64).astype(np.int64))[:-1] \
            if len(self._shown_s) else np.zeros(0)
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
                "fps": self.fps,
                "step_downs": [list(step) for step in self.step_downs],
                "size_changes": self.size_changes,
                "fps_changes": self.fps_changes,
                "controls_dropped": self.bus.dropped}


def _area(size):
    """Pixels in a (W, H) size or a "WxH" text."""
    width, height = (int(n) for n in size.split("x")) if isinstance(size, str) else size
    return width * height


def scaled_ladder(output_size):
    """bench.LADDER (16:9 sizes) at the output's aspect: the same widths, even heights, with
    32 wide below them, so a machine too busy for 64x36 still has somewhere to step down to."""
    from .bench import LADDER

    width, height = output_size
    return [(w, max(2, round(w * height / width / 2) * 2)) for w, _ in ((32, 18), *LADDER)]


def default_model(device):
    """The bundled model a show or render uses without --model: `hires` on a CPU, where lite's cost a
    pixel caps the frame at 32x18 on a 2-core VM at 30 fps while hires draws 128x72 (bench); `lite`
    on a CUDA GPU, which has the speed for lite's sharper in-betweens, and wherever hires is not
    bundled."""
    from .flow.checkpoint import BUNDLED_MODELS

    return "lite" if device == "cuda" or not BUNDLED_MODELS["hires"].is_file() else "hires"


def open_live(*, track=None, device=None, images=None, model_path=None, mode="explore", seed=0,
              silent=False, gen_size=None, fps=60.0, output_size=(1280, 720), precision="fp32",
              compute="cpu", latency_ms=0.0, min_gen_size=(128, 72), loop=False):
    """The source, the Show and the step-down ladder of a live session: a track played (or
    followed silently), or a device. gen_size: (W, H), "auto" (the largest size on the ladder
    this machine draws within the frame budget, measured now) or None (the model's own size).
    precision: "fp32" or "int8" (decode only; encode stays exact; ~41 dB from fp32). Returns
    (source, show, ladder, measured): the ladder of sizes the show may step between (from
    min_gen_size up), and what was measured at each size tried ({(W, H): the bench row, with
    its "decode_ms" and the ONNX Runtime "threads" measured faster there}).

    Everything the user can get wrong is checked before the model loads and before any output
    opens: the output device (so `serve` says so before it prints its URL), the images."""
    import torch

    from .audio.devices import find_device
    from .audio.sources import DeviceSource, FileSource, Playback, SilentPlayback
    from .flow import load_model

    if loop and not (silent and track is not None):
        raise UserError("--loop repeats a track followed with --silent; add --silent")
    if not 0 <= latency_ms <= 2000:
        raise UserError(f"--latency-ms {latency_ms:g}: expected 0..2000 ms (the display's and the sound "
                        "device's delay)")
    torch.set_num_threads(1)
    if track is not None:
        file_source = FileSource(track)
        if not silent:
            try:
                find_device(device, "output")
            except UserError as error:
                if "choose one of: none" in str(error):
                    raise UserError("no sound output device found to play the track on; add --silent "
                                    "to follow it without sound (or see flowvj devices)") from None
                raise UserError(f"{error}; or add --silent to follow the track without sound") from None
        source = SilentPlayback(file_source, loop=loop) if silent else Playback(file_source, device=device)
    else:
        find_device(device, "input")
        source = DeviceSource(device)
    if images:
        check_image_specs(images)
    from .generator import resolve_device

    compute = resolve_device(compute)
    model = load_model(model_path or default_model(compute))
    ladder, measured = (), {}
    if gen_size == "auto":
        from .bench import pick_gen_size, runnable

        if min_gen_size == "auto":
            raise UserError("--min-gen-size auto: expected WIDTHxHEIGHT, e.g. 128x72")
        ladder = runnable(model, scaled_ladder(output_size))    # sizes this model's squeezes divide
        floored = [size for size in ladder if _area(size) >= _area(min_gen_size)]
        ladder = floored or ladder[-1:]                         # the floor, by area
        gen_size, rows = pick_gen_size(model, fps, ladder=ladder, precision=precision, device=compute)
        measured = {(row["width"], row["height"]): row for row in rows}
        log.info("generation size %s (auto: the largest this machine draws at %g fps; decode %s)",
                 size_text(gen_size), fps,
                 ", ".join(f"{row['size']} {row['decode_ms']:.0f} ms" for row in rows))
    elif gen_size is None:
        gen_size = (model.config.image_size,) * 2
    check_gen_fits_model(gen_size, model)
    check_gen_memory(gen_size, model)
    images = load_show_images(images, gen_size)
    # Built before the source starts: the model's export takes a few seconds a track must not lose.
    show = Show(model, images, mode=mode, seed=seed, sample_rate=source.rate, gen_size=gen_size,
                precision=precision, device=compute, latency_s=latency_ms / 1000.0,
                threads=measured.get(tuple(gen_size), {}).get("threads"))
    return source, show, ladder, measured
