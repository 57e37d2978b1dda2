"""The Show: audio -> features -> navigator -> flow inverse -> compositor, one call per frame, the
pipeline every path shares. Only the clock differs: offline (render.py), frame i sits at t = i / fps
and takes exactly its slice of the track, so a render is deterministic for a seed; live
(live/loop.py), the wall clock and the audio source's latest samples drive the same calls.

The compositor (compose.py) is the one stage that takes the flow's small frame to the output's
size, here in `compose`, for every output (window, page, NDI, recorder, render's video): the frame
and the navigator's blend weights of its latent travel together to it, with the detail layers of
the image set and generation size the latent was navigated on (`layers`, swapped with them)."""

import numpy as np

from ..compose import DEFAULT_DETAIL, Compositor, check_detail
from ..errors import UserError
from .generator import Generator
from .navigate import Navigator


class Show:
    """The shared per-frame pipeline: analyzer, navigator and generator, wired once.

    `images` are uint8 (N, H, W, 3) at the generation size `gen_size` = (W, H) (None: the
    model's own training size); they are encoded there, exactly, so the ends of every
    interpolation are the user's images at the show's own resolution.

    `compositor` (compose.Compositor, None: frames stay at the generation size) takes each frame
    to its out_size; `originals` are the same images aspect-filled at that size (uint8
    (N, H', W', 3), images.load_show_images(specs, out_size)), which its "transfer" method takes
    the detail from. Both are kept: a set or size swapped live makes new layers from them.
    """

    def __init__(self, model, images, mode="explore", seed=0, sample_rate=44100, backend="onnx",
                 interpolation="slerp", gen_size=None, generator=None, precision="fp32", device="cpu",
                 latency_s=0.0, threads=None, compositor=None, originals=None):
        from ..audio.analyzer import Analyzer

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
        self.compositor, self.originals = compositor, None if originals is None else np.asarray(originals)
        if compositor is not None and compositor.needs_originals and self.originals is None:
            raise ValueError(f"the {compositor.method!r} compositor needs the originals at its out size")
        self.layers = self.prepare_layers(self.originals, self.images)

    @property
    def out_size(self):
        """(width, height) of the frames the outputs get: the compositor's, else the gen size."""
        return self.compositor.out_size if self.compositor is not None else self.gen_size

    def prepare_layers(self, originals, images):
        """The compositor's detail layers for `originals` at the output size and `images` at a
        generation size (None where the method needs none): pure, for a background thread."""
        if self.compositor is None:
            return None
        return self.compositor.prepare(originals, images)

    def compose(self, frame, weights, layers=None):
        """The one place a frame is composed: the flow's uint8 frame at the generation size and
        the navigator's weights of its latent -> uint8 at out_size. `layers`: those of the state
        the latent was navigated in (default: the Show's own, `layers`); live, they travel with
        the latent to the compose thread (live/loop.py), the only thread that composes, so a set or size swapped
        while a frame is in flight never pairs its weights with another set's detail."""
        if self.compositor is None:
            return frame
        return self.compositor.compose(frame, weights, self.layers if layers is None else layers)

    @property
    def gen_size(self):
        """(width, height) the flow draws at."""
        _, height, width = self.generator.shape
        return width, height

    def use_sample_rate(self, rate):
        """A device may run at another rate than asked for: the analyzer follows it."""
        from ..audio.analyzer import Analyzer

        if rate != self.sample_rate:
            self.analyzer = Analyzer(sample_rate=rate, n_bands=self.analyzer.n_bands, latency_s=self.latency_s)
            self.sample_rate = rate

    def step(self, features, dt_s):
        """The frame's Features (from the features stage) -> the next frame's latent z (float32
        (3, H, W)): the live loop's call."""
        self.features = features
        return self.navigator.step(features, dt_s)

    def next_latent(self, audio_block, dt_s):
        """Audio heard since the last frame -> the next frame's latent z (float32 (3, H, W)): the
        analyzer and the step in one call, offline (render) and in tests.

        A frame can come before any new audio: the last Features then stand.
        """
        if len(audio_block) or self.features is None:
            self.features = self.analyzer.process(audio_block)
        return self.navigator.step(self.features, dt_s)

    def next_frame(self, audio_block, dt_s):
        """Audio heard since the last frame -> the next uint8 frame (H, W, 3) at out_size."""
        z = self.next_latent(audio_block, dt_s)
        return self.compose(self.generator.decode(z), self.navigator.weights.copy())


def make_compositor(out_size, detail=DEFAULT_DETAIL, amount=1.0):
    """The compositor of a show command (play, live, serve, render), its out size the output's:
    --detail and --detail-amount checked, each a one-line UserError naming the flag."""
    from ..control.catalog import CONTROLS

    low, high = CONTROLS["detail"].low, CONTROLS["detail"].high     # the live control's range
    if not low <= float(amount) <= high:
        raise UserError(f"--detail-amount {amount:g}: expected a number in {low:g}..{high:g} "
                        "(0 no detail, 1 the originals' detail as is)")
    return Compositor(out_size, method=check_detail(detail), amount=float(amount))


def frame_bounds(frame_index, fps, sample_rate, delay_s=0.0):
    """Sample range [a, b) of the audio an offline frame i (shown at t = i / fps) is drawn from.

    It ends half a frame after t plus `delay_s` (the analyzer's `flux_delay_s`, how long after an
    onset its flux is counted), so each onset moves the frame shown nearest to it, the frame
    metrics.onset_envelope gives it; frame 0 starts at 0. Integer bounds from absolute times, so
    the ranges tile the track without gaps or drift. Ending at t + 1/fps instead, as until
    2026-12-04, moved a third of the onsets to the frame before (benchmarks/JOURNAL.md, "Issue 13,
    the motion flux at half hop").
    """
    def end(i):
        return max(0, round(((i + 0.5) / fps + delay_s) * sample_rate))
    return (0 if frame_index == 0 else end(frame_index - 1)), end(frame_index)
