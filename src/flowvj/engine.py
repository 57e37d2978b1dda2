"""The Engine: audio -> features -> navigator -> flow inverse -> upscale -> output, and its clock.

`Show` is the pipeline every path shares: one call per frame with the audio heard since the last
frame and the frame's duration. Only the clock differs: offline, frame i sits at t = i / fps and
takes exactly its slice of the track, so a render is deterministic for a seed; live (a later
step), the wall clock and the audio device's latest samples drive the same calls.
"""

import math
from pathlib import Path

import numpy as np

from .errors import UserError

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
        self.navigator = Navigator(self.image_latents, mode=mode, interpolation=interpolation, seed=seed)
        self.features = None

    def next_frame(self, audio_block, dt_s):
        """Audio heard since the last frame -> the next small uint8 frame (H, W, 3)."""
        self.features = self.analyzer.process(audio_block)
        z = self.navigator.step(self.features, dt_s)
        return self.generator.decode(z)


def frame_bounds(frame_index, fps, sample_rate):
    """Sample range [a, b) of frame i at t = i / fps; integer bounds, so no drift accumulates."""
    return round(frame_index * sample_rate / fps), round((frame_index + 1) * sample_rate / fps)


def render(track, out, *, images=None, model_path=None, mode="explore", size=(1280, 720), fps=30,
           duration_s=None, start_s=0.0, seed=0, crf=18, encoder_preset="veryfast", show_progress=True):
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
