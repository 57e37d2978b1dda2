"""Offline: a music video of a track, the Show driven by the frame clock (t = i / fps), decoded in
batches, composed to the video's size (compose.py, with the navigator's weights of each latent)
and encoded with the track muxed in; deterministic for a seed."""

import collections
import logging
import math

import numpy as np

from ..errors import UserError
from ..flow import load_model
from ..flow.checkpoint import default_model
from ..compose import DEFAULT_DETAIL
from ..images import load_originals
from ..outputs.video import VideoWriter, check_fps, check_size
from ..progress import ProgressReport
from .generator import resolve_device
from .pipeline import Show, frame_bounds, make_compositor
from .threads import one_thread_each
from .sizes import (
    check_frame_size,
    check_gen_fits_model,
    check_gen_memory,
    scaled_ladder,
)

log = logging.getLogger(__name__)


# render's default generation size: the largest rung of the live ladder (at the output's aspect)
# whose decode costs at most RENDER_GFLOP a frame (bench.conv_gflop), which keeps a 30 s 720p
# render near twice real time on the 2-core dev VM (benchmarks/live/resolution_targets.py): 128x72
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
    """The whole track navigated in order (each latent depends on the one before), in batches:
    (latents (b, 3, H, W), the navigator's weights of each (b, n images)), which the
    compositor takes with the decoded frames."""
    zs, weights = [], []
    for i in range(n_frames):
        a, b = frame_bounds(i, fps, rate, show.analyzer.flux_delay_s)
        zs.append(show.next_latent(audio[a:b], (b - a) / rate))
        weights.append(show.navigator.weights.copy())
        if len(zs) == batch or i == n_frames - 1:
            yield np.stack(zs), np.stack(weights)
            zs, weights = [], []


def render(track, out, *, images=None, model_path=None, mode="explore", size=(1280, 720), fps=30,
           duration_s=None, start_s=0.0, seed=0, crf=18, encoder_preset="superfast",
           gen_size="auto", workers=1, engine="inline", precision="fp32", device="cpu",
           show_progress=True, detail=DEFAULT_DETAIL, detail_amount=1.0):
    """Render a music video of `track` to `out` (H.264 + AAC, the track muxed in); returns frames.

    The flow draws at `gen_size` ((width, height); "auto": render_gen_size; None: the model's own
    32x32) with `model_path` (None: default_model, hires on a CPU) and each frame is composed
    to `size` by the compositor (`detail`: transfer, sharpen or off; `detail_amount` 0..2). The
    track is navigated in this process, in order; the latents are decoded in batches of
    RENDER_BATCH by `workers` on `engine` (decode_pool.py: inline, local processes or Ray), then
    composed (each with its navigator weights) and encoded here in order: the same frames on
    every engine.
    """
    from .decode_pool import ENGINES, open_pool

    if engine not in ENGINES:
        raise UserError(f"--decode-engine {engine}: expected one of {', '.join(ENGINES)}")
    from ..audio.sources import FileSource

    size, fps = check_frame_size(check_size(size)), float(check_fps(fps))
    compositor = make_compositor(size, detail, detail_amount)
    if start_s < 0:
        raise UserError(f"--start {start_s:g}: expected a time in seconds >= 0")
    if duration_s is not None and duration_s <= 0:
        raise UserError(f"--duration {duration_s:g}: expected a positive number of seconds")
    one_thread_each()   # per-frame inference and numpy on one thread each (threads.py)
    source = FileSource(track)
    first = int(round(start_s * source.rate))
    if first >= len(source.samples):
        raise UserError(f"--start {start_s:g} s is past the end of {track} ({source.duration_s:.1f} s)")
    last = len(source.samples) if duration_s is None else min(len(source.samples),
                                                               first + int(round(duration_s * source.rate)))
    audio = source.samples[first:last]
    n_frames = max(1, math.floor(len(audio) / source.rate * fps))

    device = resolve_device(device)
    model_path = model_path or default_model(device)     # decode workers load the same model
    model = load_model(model_path)
    if gen_size == "auto":
        gen_size = render_gen_size(model, size)
    gen_size = tuple(gen_size) if gen_size else (model.config.image_size,) * 2
    check_gen_fits_model(gen_size, model)
    check_gen_memory(gen_size, model)
    originals, show_images = load_originals(images, size, gen_size)
    show = Show(model, show_images, mode=mode, seed=seed, sample_rate=source.rate, gen_size=gen_size,
                precision=precision, device=device, compositor=compositor, originals=originals)
    waiting = collections.deque()       # each batch's weights, in order, until its frames come back

    def latents():
        for zs, weights in _latent_batches(show, audio, fps, source.rate, n_frames):
            waiting.append(weights)
            yield zs

    report = ProgressReport("render", n_frames, unit="frame") if show_progress else None
    finished = False
    try:
        with VideoWriter(out, size=size, fps=fps, audio=audio, audio_rate=source.rate, crf=crf,
                         preset=encoder_preset) as video, \
                open_pool(model_path, gen_size, workers, engine, generator=show.generator,
                          precision=precision, device=device) as pool:
            for frames in pool.map(latents()):
                for frame, weights in zip(frames, waiting.popleft()):
                    video.write(show.compose(frame, weights))
                if report:
                    report.update(len(frames), t=f"{video.duration_s:.1f}s")
        finished = True
    except OSError as error:  # a full disk, a read-only folder: the temporary file is gone
        raise UserError(f"-o {out}: cannot write the video ({error.strerror or error})") from None
    finally:
        if report:
            report.close(final=finished)
    return n_frames
