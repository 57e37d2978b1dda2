"""The Engine: audio -> features -> navigator -> flow inverse -> upscale -> output, and its clock.

`Show` is the pipeline every path shares: one call per frame with the audio heard since the last
frame and the frame's duration. Only the clock differs: offline, frame i sits at t = i / fps and
takes exactly its slice of the track, so a render is deterministic for a seed; live
(`LiveLoop`), the wall clock and the audio source's latest samples drive the same calls.
"""

import dataclasses
import logging
import math
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from .errors import UserError

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_IMAGES = ASSETS / "images"


def load_show_images(specs, size):
    """The user's images: folders and/or files, any size and mode -> uint8 (N, size, size, 3).

    specs: list of paths; None means the bundled demo images.
    """
    from .data import IMAGE_EXTENSIONS, load_image, load_image_folder

    if not specs:
        if not DEFAULT_IMAGES.is_dir():
            raise UserError(f"no bundled demo images at {DEFAULT_IMAGES} yet; pass --images DIR_OR_FILES")
        specs = [DEFAULT_IMAGES]
    images = []
    for spec in map(Path, specs):
        if spec.is_dir():
            images.extend(load_image_folder(spec, size=size).images)
        elif spec.is_file():
            if spec.suffix.lower() not in IMAGE_EXTENSIONS:
                raise UserError(f"--images {spec} is not an image file; expected one of "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))} or a folder of them")
            images.append(load_image(spec, size))
        else:
            raise UserError(f"--images {spec} does not exist; expected a folder of images or image files")
    return np.stack(images)


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
    """The shared per-frame pipeline: analyzer, navigator and generator, wired once."""

    def __init__(self, model, images, mode="explore", seed=0, sample_rate=44100, backend="onnx",
                 interpolation="slerp"):
        from .audio.analyzer import Analyzer
        from .generator import Generator
        from .navigate import Navigator

        self.generator = Generator(model, backend=backend)
        self.image_latents = self.generator.encode(images)
        # weighted mode reads one spectrum section per image
        self.analyzer = Analyzer(sample_rate=sample_rate, n_bands=max(2, len(images)))
        self.sample_rate = sample_rate
        self.navigator = Navigator(self.image_latents, mode=mode, interpolation=interpolation, seed=seed)
        self.features = None

    def use_sample_rate(self, rate):
        """A device may run at another rate than asked for: the analyzer follows it."""
        from .audio.analyzer import Analyzer

        if rate != self.sample_rate:
            self.analyzer = Analyzer(sample_rate=rate, n_bands=self.analyzer.n_bands)
            self.sample_rate = rate

    def next_frame(self, audio_block, dt_s):
        """Audio heard since the last frame -> the next small uint8 frame (H, W, 3).

        Live, a frame can come before any new audio: the last Features then stand.
        """
        if len(audio_block) or self.features is None:
            self.features = self.analyzer.process(audio_block)
        z = self.navigator.step(self.features, dt_s)
        return self.generator.decode(z)


def frame_bounds(frame_index, fps, sample_rate):
    """Sample range [a, b) of frame i at t = i / fps; integer bounds, so no drift accumulates."""
    return round(frame_index * sample_rate / fps), round((frame_index + 1) * sample_rate / fps)


def render(track, out, *, images=None, model_path=None, mode="explore", size=(1280, 720), fps=30,
           duration_s=None, start_s=0.0, seed=0, crf=18, encoder_preset="superfast", show_progress=True):
    """Render a music video of `track` to `out` (H.264 + AAC, the track muxed in); returns frames."""
    import torch

    from .audio.sources import FileSource
    from .flow import load_model
    from .outputs.video import VideoWriter, check_fps, check_size
    from .progress import ProgressReport
    from .upscale import upscale

    size, fps = check_size(size), float(check_fps(fps))
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
    model = load_model(model_path)
    show = Show(model, load_show_images(images, model.config.image_size), mode=mode, seed=seed,
                sample_rate=source.rate)
    report = ProgressReport("render", n_frames, unit="frame") if show_progress else None
    with VideoWriter(out, size=size, fps=fps, audio=audio, audio_rate=source.rate, crf=crf,
                     preset=encoder_preset) as video:
        for i in range(n_frames):
            a, b = frame_bounds(i, fps, source.rate)
            frame = show.next_frame(audio[a:b], (b - a) / source.rate)
            video.write(upscale(frame, size))
            if report:
                report.update(1, t=f"{b / source.rate:.1f}s")
    if report:
        report.close()
    return n_frames


class LiveLoop:
    """The live clock: each tick reads the newest audio (never a queue), makes a frame, shows it.

    The audio fed to the analyzer is exactly what was heard since the previous frame, measured on
    the source's own clock (the device's, for Playback); at most `max_block` samples, so a stall
    can never build up a backlog. Frames are paced to `fps` on the wall clock.

    Live controls (window actions from `output.poll()`, browser controls from
    `output.pending_controls()`, both applied in this loop's own thread by `_apply`):
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
    Anything else (an unknown name or set) is logged and ignored; the window's own
    toggle_meter / toggle_fullscreen are silently left to the window.
    """

    LEVELS = ("rms", "rms_smooth", "band_energy", "band_smooth", "onset_strength", "kick", "snare", "hats", "flux")

    def __init__(self, show, source, outputs, fps=60.0, max_block=4096, image_sets=None):
        self.show, self.source, self.outputs = show, source, list(outputs)
        self.fps, self.max_block = float(fps), int(max_block)
        self.image_sets = dict(image_sets or {})
        self._arrived_images = None     # (name, latents) from the loading thread, or None
        self.frame_ms, self.latency_ms = [], []
        self.running = False
        self.speed, self.sensitivity, self.temperature = 1.0, 1.0, None
        self._heard = None      # the analyzer's Features before the sensitivity gain

    def _apply(self, action, value=None):
        from .navigate import MODES

        names, navigator = list(MODES), self.show.navigator
        try:
            if action == "quit":
                self.running = False
            elif action == "next_mode":
                self._set_mode(names[(names.index(navigator.mode_name) + 1) % len(names)])
            elif action == "mode" and value in MODES:
                self._set_mode(value)
            elif action == "next_image":
                navigator.next_image()
            elif action == "temperature":
                self.temperature = navigator.set_temperature(float(value))
            elif action in ("speed", "sensitivity") and float(value) >= 0 and math.isfinite(float(value)):
                setattr(self, action, float(value))
            elif action == "image_set" and value in self.image_sets:
                threading.Thread(target=self._load_image_set, args=(value,), daemon=True).start()
            elif action not in ("toggle_meter", "toggle_fullscreen"):
                log.info("live: ignored control %r = %r", action, value)
        except (UserError, TypeError, ValueError) as error:
            log.warning("live: ignored control %r = %r: %s", action, value, error)

    def _load_image_set(self, name):
        try:
            images = load_show_images(self.image_sets[name], self.show.generator.shape[1])
            self._arrived_images = (name, self.show.generator.encode(images))
        except UserError as error:
            log.warning("live: image set %r not loaded: %s", name, error)

    def _take_arrived_images(self):
        arrived, self._arrived_images = self._arrived_images, None
        if arrived is None:
            return
        name, latents = arrived
        try:
            self.show.navigator.set_images(latents)
        except UserError as error:
            log.warning("live: image set %r not used: %s", name, error)
            return
        self.show.image_latents = latents
        if self.temperature:
            self.show.navigator.set_temperature(self.temperature)
        log.info("live: image set %r (%d images)", name, len(latents))

    def _set_mode(self, name):
        options = {"temperature": self.temperature} if name == "weighted" and self.temperature else {}
        self.show.navigator.set_mode(name, **options)

    def _next_frame(self, block, dt_s):
        """Show.next_frame with the live controls: the navigator sees the Features with the
        sensitivity gain (set as show.features, which next_frame keeps when given no new audio)
        and steps speed x dt_s."""
        show = self.show
        self._take_arrived_images()
        if len(block) or self._heard is None:
            self._heard = show.analyzer.process(block)
        gain = self.sensitivity
        show.features = self._heard if gain == 1.0 else dataclasses.replace(
            self._heard, **{name: getattr(self._heard, name) * gain for name in self.LEVELS})
        return show.next_frame(block[:0], dt_s * self.speed)

    def _meters(self):
        f = self.show.features
        recent = self.frame_ms[-30:]
        fps = 1000.0 / statistics.mean(recent) if recent else 0.0
        return {"fps": fps, "frame_ms": recent[-1] if recent else 0.0, "tempo_bpm": f.tempo_bpm,
                "rms": f.rms_smooth, "bands": [float(b) for b in f.band_smooth]}

    def run(self, duration_s=None):
        """Until quit, the track's end, or duration_s; returns the frame-time and latency stats."""
        rate = self.source.rate
        self.show.use_sample_rate(rate)
        self.running = True
        last_audio_s, last_tick = self.source.read_latest(0)[1], time.perf_counter()
        started = last_tick
        next_tick = last_tick
        while self.running:
            samples, audio_s = self.source.read_latest(self.max_block)
            t_read = time.perf_counter()
            n = min(self.max_block, max(0, round((audio_s - last_audio_s) * rate)))
            last_audio_s = audio_s
            frame = self._next_frame(samples[len(samples) - n:], t_read - last_tick)
            meters = self._meters()
            for output in self.outputs:
                output.show(frame, meters)
                for action in getattr(output, "poll", lambda: [])():
                    self._apply(str(action.value if hasattr(action, "value") else action))
                for name, value in getattr(output, "pending_controls", lambda: [])():
                    self._apply(name, value)
            now = time.perf_counter()
            self.frame_ms.append((now - last_tick) * 1000.0)
            self.latency_ms.append((now - t_read) * 1000.0)  # newest audio -> frame on screen
            last_tick = now
            if getattr(self.source, "finished", False) or (duration_s and now - started >= duration_s):
                break
            next_tick = max(next_tick + 1.0 / self.fps, now)
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        return self.stats()

    def stats(self):
        frames = sorted(self.frame_ms[1:]) or [0.0]
        return {"frames": len(self.frame_ms), "median_fps": 1000.0 / max(statistics.median(frames), 1e-9),
                "p95_frame_ms": frames[int(0.95 * (len(frames) - 1))],
                "median_latency_ms": statistics.median(self.latency_ms or [0.0]),
                "bad_frames": self.show.generator.bad_frames}


def open_live(*, track=None, device=None, images=None, model_path=None, mode="explore", seed=0,
              silent=False):
    """The source and the Show of a live session: a track played (or followed silently), or a device."""
    import torch

    from .audio.sources import DeviceSource, FileSource, Playback, SilentPlayback
    from .flow import load_model

    torch.set_num_threads(1)
    if track is not None:
        file_source = FileSource(track)
        source = SilentPlayback(file_source) if silent else Playback(file_source, device=device)
    else:
        source = DeviceSource(device)
    model = load_model(model_path)
    images = load_show_images(images, model.config.image_size)
    # Built before the source starts: the model's export takes a few seconds a track must not lose.
    return source, Show(model, images, mode=mode, seed=seed, sample_rate=source.rate)

