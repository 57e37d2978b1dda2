"""The Navigator: audio Features in, one latent z per frame out.

It holds the images' latents (exact encodings from the flow, shape (n_images, ...)) and a current
position r. Each frame the active mode proposes a destination d from the Features, and r moves
toward it: r <- interpolate(r, d, 1 - exp(-dt/follow_s)). The coefficient comes from dt, so 30
and 60 fps trace the same path in time; nothing jumps unless a mode means to (and even then r
follows within ~follow_s). Modes are small classes with one interface (`start`, `destination`),
chosen by name and switchable live: the old mode keeps running while its destination is
cross-faded into the new one's over `crossfade_s`.

Why norms matter: the flow decodes latents pushed to ~2x the images' typical norm to flat,
posterised colour (DESIGN.md), and a straight line between two near-orthogonal latents dips to
~0.7x at its middle (washed-out frames). 'slerp' therefore moves directions along the great
circle and interpolates the norm linearly, and blends of n latents use the normalised weighted
sum rescaled to the weighted mean norm, so every z stays near the images' own norms.

numpy only: the engine encodes the images with the flow elsewhere and decodes each z.
"""

import copy

import numpy as np

from ..audio.analyzer import attack_release, smoothing_coefficient
from ..control.catalog import INTERPOLATIONS, MODES
from ..errors import UserError

WARMUP_S = 1.0      # see activity()
LEVEL_ATTACK_S, LEVEL_RELEASE_S = 0.05, 1.0     # see Mode.follow_activity()
# The audience's lean (Navigator.set_bias): mild by design, the VJ's show stays the VJ's.
AUDIENCE_PICK_GAIN = 2.0    # explore: an image the whole room wants is picked 3x as often as one none does
AUDIENCE_BLEND_GAIN = 1.0   # weighted: its weight doubles before the weights are normalised again
MOOD_DRIVE = 0.25           # intense: the travelling modes' motion x1.25; calm: x0.75
MOOD_TEMPERATURE = 0.5      # intense: weighted's temperature x0.71 (one image stands out); calm: x1.41


def lerp(a, b, t):
    """Straight line from a (t=0) to b (t=1); shrinks the norm between near-orthogonal latents."""
    return a + t * (b - a)


def slerp(a, b, t):
    """Norm-keeping interpolation of flat vectors: the direction follows the great circle from a
    to b, the norm goes linearly from |a| to |b| (two equal norms stay equal all the way).
    Near-parallel (or near-antiparallel, or zero) vectors fall back to the straight line, where
    the great circle is undefined or numerically unstable."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return lerp(a, b, t)
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return lerp(a, b, t)
    direction = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return direction * (na + t * (nb - na))


def blend(latents, weights, interpolation):
    """Weighted combination of flat latents (n, D) with weights (n,) summing to 1. 'slerp' rescales
    the weighted sum to the weighted mean norm (a slerp-like blend of n points that keeps norms;
    a plain sum of near-orthogonal latents shrinks toward 1/sqrt(n) of their norm)."""
    total = weights @ latents
    if interpolation == "linear":
        return total
    norm, target = np.linalg.norm(total), weights @ np.linalg.norm(latents, axis=1)
    return total if norm < 1e-9 * max(target, 1e-12) else total * (target / norm)


def rebin(values, n):
    """Average `values` (m,) into n equal sections (piecewise-constant, so m < n repeats values):
    the weighted mode needs one level per image whatever the analyzer's band count."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) == n:
        return values
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    edges = np.linspace(0, len(values), n + 1)
    return np.diff(np.interp(edges, np.arange(len(values) + 1), cumulative)) / np.diff(edges)


def softmax(x, temperature):
    """exp(x / temperature), normalised: low temperature -> one-hot, high -> uniform."""
    e = np.exp((x - np.max(x)) / temperature)
    return e / e.sum()


def activity(features, quiet=0.3):
    """How much is going on, from the smoothed loudness relative to the track's long-term average
    (rms_smooth, where 0.5 is the average): 0 at or below `quiet`, 1 at the average, rising past
    it (2 at 0.7). The analyzer's adaptive gain makes levels relative, which suits a mix at any
    volume but would move a quiet passage almost as much as a loud one (relative levels 0.41 vs
    0.64 in the ambient tracks' quietest and loudest fifths); measured from a floor, those become
    0.55 vs 1.7, and breakdowns settle. For the analyzer's first `WARMUP_S` the activity ramps up
    from 0: until it has heard a second it has no average to call anything loud against (a
    track fading in from silence reads as average at once), so the show eases in."""
    level = float(features.rms_smooth >= quiet) if quiet >= 0.5 else \
        max(0.0, (features.rms_smooth - quiet) / (0.5 - quiet))
    return level * min(1.0, features.time_s / WARMUP_S)


def motion_drive(features):
    """How hard the travelling modes move this frame (>= 0; 1.2-1.4 on a busy track's average
    frame): the analyzer's `flux` (log-compressed 12-band rise, relative to its ~10 s average) to
    the power 1.25, times 1 + `onset_strength` (the block's peak linear flux relative to its
    recent peak, 0..1). The flux lets every hit move the picture, soft or hard, frame by frame;
    the factor makes the hits that stand out of a dense texture (the accent in a run of eighths,
    the off-beat clap) move it up to twice as far, so the motion has the contrast the music has;
    the power gives back the contrast the flux's finer frames spread out (below).

    Chosen by cross-validation on the 19 LMMS beat tracks (benchmarks/motion/motion_cv.py: every other
    track by name tuned on, 30 s excerpts, both travelling modes, rendered motion against the
    onsets as `flowvj sync` measures it). Decoded at 32x18 on the tuning fold, the xcorr_peak
    median / worst pair went 0.713 / 0.622 (the flux alone, round 1) -> 0.756 / 0.633; the
    flux plus the kick/snare/hats strengths reached 0.716 / 0.600. On the cheaper latent-step
    screen that picked those three, every other candidate's worst tuning pair was lower (0.41-0.66
    against 0.68-0.70): powers of the flux (0.5, 1.5, 2), the flux less a floor or less its own
    0.2-0.5 s mean, a 30 or 60 ms release, the flux times the drum strengths, and the drum
    strengths, band_onset or onset_strength alone. Rerun on 2026-12-04 with the flux on its
    half-hop frames and render's frame bounds (analyzer._MotionFlux, engine.frame_bounds), that
    drive was chosen again by the worst pair (0.6624 against 0.6616 for flux^1.5), held out
    0.772 / 0.535; but the finer flux spreads each hit over more frames, so the drive had less
    contrast and the picture followed it less well. With three candidates added for that
    (flux^1.25 or flux^1.5 times the factor, or the factor squared), the search chose flux^1.25
    x (1 + onset_strength): tuning 0.764 / 0.681 (flux^1.5 x the factor 0.784 / 0.658, flux x
    the factor 0.761 / 0.662, round 1's flux 0.702 / 0.562), held out 0.793 / 0.588."""
    return features.flux ** 1.25 * (1.0 + features.onset_strength)


def _positive(name, value, allow_zero=False):
    """Check a number option; a UserError names it and what was expected."""
    ok = isinstance(value, (int, float, np.number)) and np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise UserError(f"navigator option {name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


class Mode:
    """One way of choosing the destination. `start(r)` is called when the mode takes over from
    position r (so it can begin near it); `destination(features, dt_s)` returns a flat float64
    latent each frame. Subclasses set `min_images` when they need more than one image."""

    min_images = 1
    follow_s = 0.01     # the Navigator's default following time for this mode (see Navigator)
    audience = None     # the room's share behind each image (n,), 0..1, or None (Navigator.set_bias)
    drive_gain = temperature_gain = 1.0     # the audience's mood (Navigator.set_bias); 1.0 without

    def __init__(self, latents, interpolate, rng):
        self.latents, self.interpolate, self.rng = latents, interpolate, rng
        self.level = 0.0

    def one_hot(self, index, amount=1.0):
        """Weights (n,) with `amount` on image `index` (for the modes' `weights`)."""
        weights = np.zeros(len(self.latents))
        weights[index] = amount
        return weights

    def pair_weights(self, a, b, t):
        """The weights of the point t of the way from image a to image b."""
        return self.one_hot(a, 1.0 - t) + self.one_hot(b, t)

    def follow_activity(self, features, dt_s, quiet):
        """The activity (capped at 2) that scales a travelling mode's motion, rising within
        LEVEL_ATTACK_S and falling over LEVEL_RELEASE_S: a breakdown still stills the picture,
        but music that pumps (a sidechained pad dipping between kicks) no longer switches the
        motion off and on within each beat. On the 130 BPM warzone2100 track the rendered
        video's correlation with the onsets went 0.49 / 0.42 -> 0.52 / 0.53 (explore /
        magellan), within +-0.06 elsewhere (benchmarks/JOURNAL.md)."""
        target = min(activity(features, quiet), 2.0)
        self.level = float(attack_release(self.level, target, dt_s, LEVEL_ATTACK_S, LEVEL_RELEASE_S))
        return self.level

    def drive(self, features, dt_s):
        """This frame's motion drive (see `motion_drive`), times the audience's mood; called once
        per destination."""
        return motion_drive(features) * self.drive_gain

    def nearest_image(self, r):
        return int(np.argmin(np.linalg.norm(self.latents - r, axis=1)))

    def start(self, r):
        pass

    def destination(self, features, dt_s):
        raise NotImplementedError

    def weights(self):
        """How much of each image (n,), summing to 1, the last destination is made of: carried
        beside the latent so the compositor (compose.py) knows whose detail the frame wears."""
        raise NotImplementedError

    def next_image(self):
        """Head for the next image (the window's n/space key). The Navigator cross-fades from a
        copy of the mode as it was, so a mode may change its state abruptly here."""


class WeightedMode(Mode):
    """Spectrum -> image weights: the band energies, one section per image, go through a softmax
    with `temperature` (band levels are 0..1, so ~0.1 makes the loudest band's image dominate and
    ~1 mixes them all). The original authors' version was static without a temperature and
    flickered with a high one; here the weights are smoothed with time constant `smoothing_s`
    seconds, so each weight moves at most dt/smoothing_s of the gap per frame."""

    follow_s = 0.1      # no deliberate jumps here: the following smooths the blend further

    def __init__(self, latents, interpolate, rng, interpolation="slerp", temperature=0.1, smoothing_s=0.5):
        super().__init__(latents, interpolate, rng)
        self.interpolation = interpolation
        self.temperature = _positive("temperature", temperature)
        self.smoothing_s = _positive("smoothing_s", smoothing_s, allow_zero=True)
        self.blend_weights = np.full(len(latents), 1.0 / len(latents))
        self.order = np.arange(len(latents))      # the image each (rolled) row of latents is

    def start(self, r):
        self.blend_weights = np.eye(len(self.latents))[self.nearest_image(r)]   # begin where r is

    def destination(self, features, dt_s):
        levels = rebin(features.band_energy, len(self.latents))
        target = softmax(levels, self.temperature * self.temperature_gain)
        if self.audience is not None:   # the room's images weigh more (rows are rolled: by `order`)
            target = target * (1.0 + AUDIENCE_BLEND_GAIN * self.audience[self.order])
            target = target / target.sum()
        coefficient = smoothing_coefficient(self.smoothing_s, dt_s)
        self.blend_weights = self.blend_weights + coefficient * (target - self.blend_weights)
        return blend(self.latents, self.blend_weights, self.interpolation)

    def weights(self):
        """The blend's weights, by image (the rows of `latents` are rolled by next_image)."""
        by_image = np.zeros(len(self.latents))
        by_image[self.order] = self.blend_weights
        return by_image

    def next_image(self):
        """Cycle the band -> image assignment by one (a lasting bias, not a moment's boost): the
        spectrum section that chose image i now chooses image i + 1. The latents and the weights
        roll together, so the blend is unchanged at this instant; the weights then move to the
        next image at the mode's own smoothing rate."""
        self.latents, self.blend_weights = np.roll(self.latents, -1, axis=0), np.roll(self.blend_weights, -1)
        self.order = np.roll(self.order, -1)


class MagellanMode(Mode):
    """Circle round the images in order, interpolating between neighbours. The speed, in images
    per second, is `images_per_s` plus `flux_speed` x the motion drive (`motion_drive`: the
    perceptual onset strength, more on the hits that stand out), times the activity (see `activity`; capped at 2). It never
    goes slower than `drift` x images_per_s. So quiet music drifts, loud music travels, and the
    travel surges on each hit, frame by frame: the picture moves when the music hits, by as much
    as it hits (motion that followed loudness alone lagged the hits by 2-4 frames and correlated
    0.01-0.27 with them; per-onset steps on top of the flux lowered it; benchmarks/JOURNAL.md)."""

    min_images = 2

    def __init__(self, latents, interpolate, rng, images_per_s=0.05, flux_speed=0.3, drift=0.5, quiet=0.3):
        super().__init__(latents, interpolate, rng)
        self.images_per_s = _positive("images_per_s", images_per_s, allow_zero=True)
        self.flux_speed = _positive("flux_speed", flux_speed, allow_zero=True)
        self.drift = _positive("drift", drift, allow_zero=True)
        self.quiet = _positive("quiet", quiet, allow_zero=True)
        self.position = 0.0             # in images; wraps round n

    def start(self, r):
        self.position = float(self.nearest_image(r))

    def destination(self, features, dt_s):
        n, level = len(self.latents), self.follow_activity(features, dt_s, self.quiet)
        speed = self.images_per_s + self.flux_speed * self.drive(features, dt_s)
        self.position = (self.position + dt_s * max(speed * level, self.drift * self.images_per_s)) % n
        i = int(self.position)
        return self.interpolate(self.latents[i], self.latents[(i + 1) % n], self.position - i)

    def weights(self):
        i = int(self.position)
        return self.pair_weights(i, (i + 1) % len(self.latents), self.position - i)

    def next_image(self):
        """The tour moves on to the image after the nearest one on the circle (the jump of the
        position is cross-faded by the Navigator) and travels on from there."""
        self.position = float((round(self.position) + 1) % len(self.latents))


class ExploreMode(Mode):
    """From the current (home) image, morph toward a randomly chosen other image.

    The amount of the morph is pushed toward the target by `flux_push` x the motion drive
    (`motion_drive`) x the activity (capped at 2) each second: it jumps on the hits, most on the kicks, whose flux
    is the largest, and holds still between them. It relaxes toward a rest of `rms_amount` x
    activity / 2 (0.2 at the track's average loudness, 0 in its quiet passages) with time
    constant `relax_s`. When the morph arrives, the target becomes home and a new target is
    drawn, so the journey goes on without a jump. Every `beats_per_target` beats (or that many
    half-seconds before the tempo locks) a new target is drawn from the seeded RNG (the old
    target becomes home if the morph was past halfway) and the old pair's point is cross-faded
    into the new pair's over `pick_fade_s` seconds of flux time (a second at the usual rate of
    hits, faster when busier, paused in silence), so the pick too moves on the hits; a pick
    falls due only once the last one has faded in.

    Why not jumps on onset and kick events, then a quick relax (the first design): each event's
    jump was followed by a relaxation over the next frames that the music did not make, and the
    event pickers miss soft hits. On the busiest LMMS track (Jousboxx) the rendered video's
    motion correlated 0.31 with the onsets that way, 0.54 pushed by the flux (benchmarks/JOURNAL.md)."""

    min_images = 2

    def __init__(self, latents, interpolate, rng, rms_amount=0.4, flux_push=1.0, relax_s=3.0,
                 beats_per_target=8, pick_fade_s=1.0, quiet=0.3):
        super().__init__(latents, interpolate, rng)
        self.rms_amount = _positive("rms_amount", rms_amount, allow_zero=True)
        self.flux_push = _positive("flux_push", flux_push, allow_zero=True)
        self.quiet = _positive("quiet", quiet, allow_zero=True)
        self.relax_s = _positive("relax_s", relax_s, allow_zero=True)
        self.pick_fade_s = _positive("pick_fade_s", pick_fade_s, allow_zero=True)
        if not isinstance(beats_per_target, (int, np.integer)) or beats_per_target < 1:
            raise UserError(f"navigator option beats_per_target must be a whole number >= 1, got {beats_per_target!r}")
        self.beats_per_target = int(beats_per_target)
        self.start(latents[0])

    def _pick_other(self, index):
        if self.audience is not None:
            return self._pick_leaning(index)
        return int((index + 1 + self.rng.integers(len(self.latents) - 1)) % len(self.latents))

    def _pick_leaning(self, index):
        """Another image than `index`, the odds of each 1 + AUDIENCE_PICK_GAIN x the room's share
        behind it: every image stays possible, the voted ones come up more often."""
        odds = 1.0 + AUDIENCE_PICK_GAIN * self.audience
        odds[index] = 0.0
        return int(self.rng.choice(len(odds), p=odds / odds.sum()))

    def start(self, r):
        self.home, self.amount, self.beats, self.since_pick_s = self.nearest_image(r), 0.0, 0, 0.0
        self.target = self._pick_other(self.home)
        self.previous, self.fade = None, 1.0          # the (home, target) pair fading out
        self._weights = self.one_hot(self.home)

    def _point(self, home, target):
        return self.interpolate(self.latents[home], self.latents[target], self.amount)

    def destination(self, features, dt_s):
        self.since_pick_s += dt_s
        self.beats += bool(features.beat)
        no_tempo_due = features.tempo_bpm <= 0 and self.since_pick_s >= 0.5 * self.beats_per_target
        due = (features.beat and self.beats >= self.beats_per_target) or no_tempo_due
        if due and self.previous is None:          # a pick waits for the last one's fade to end
            self.previous, self.fade = (self.home, self.target), 0.0
            if self.amount > 0.5:
                self.home = self.target
            self.target = self._pick_other(self.home)
            self.beats, self.since_pick_s = 0, 0.0
        level, drive = self.follow_activity(features, dt_s, self.quiet), self.drive(features, dt_s)
        self.amount += self.flux_push * drive * level * dt_s
        if self.amount >= 1.0 and self.previous is None:     # arrived: travel on from the target
            self.home, self.amount = self.target, self.amount - 1.0
            self.target = self._pick_other(self.home)
        self.amount = min(self.amount, 1.0)
        rest = min(1.0, 0.5 * self.rms_amount * level)
        self.amount += float(smoothing_coefficient(self.relax_s, dt_s)) * (rest - self.amount)
        d, self._weights = self._point(self.home, self.target), self.pair_weights(self.home, self.target, self.amount)
        if self.previous is not None:
            step = dt_s * drive / self.pick_fade_s if self.pick_fade_s > 0 else 1.0
            self.fade = min(1.0, self.fade + step)
            s = self.fade * self.fade * (3 - 2 * self.fade)
            d = self.interpolate(self._point(*self.previous), d, s)
            self._weights = (1.0 - s) * self.pair_weights(*self.previous, self.amount) + s * self._weights
            if self.fade >= 1.0:
                self.previous = None
        return d

    def weights(self):
        return self._weights

    def next_image(self):
        """The image after the one the picture is nearest (target if the morph is past halfway,
        else home) becomes home, with a fresh target and the beat count restarted; the Navigator
        cross-fades from the old pair."""
        current = self.target if self.amount > 0.5 else self.home
        self.home = (current + 1) % len(self.latents)
        self.target = self._pick_other(self.home)
        self.previous, self.fade, self.beats, self.since_pick_s = None, 1.0, 0, 0.0


MODE_CLASSES = {"weighted": WeightedMode, "magellan": MagellanMode, "explore": ExploreMode}
assert tuple(MODE_CLASSES) == MODES, "control/catalog.py names the modes; one class each here"


def _checked_latents(image_latents):
    latents = np.asarray(image_latents, dtype=np.float64)
    if latents.ndim < 2 or len(latents) < 1 or not np.all(np.isfinite(latents)):
        raise UserError(f"navigator needs finite image latents shaped (n_images, ...), got shape {latents.shape}")
    return latents


class Navigator:
    """Holds `image_latents` (n_images, ...) and the position r; `step(features, dt_s)` returns
    the next z (float32, the shape of one image latent).

    Parameters
    ----------
    image_latents : array (n_images, ...), the images' exact latents from the flow.
    mode : 'weighted' | 'magellan' | 'explore'.  mode_options go to the mode (temperature, ...).
    interpolation : 'slerp' (keeps norms, default) or 'linear'.
    follow_s : time constant (s) of r following the mode's destination (0 = jump to it); None
        (default) takes the active mode's: 0.1 s for weighted, 0.01 s for magellan and explore,
        whose own paths are continuous and move on the hits, so following only rounds them off
        (0.1 s spread a kick's move over ~5 frames and cut the motion's correlation with the
        onsets by a third; 0.02 s still cost 0.04 on the busiest track).
    crossfade_s : how long a live mode switch fades from the old mode's destination to the new.
    seed : makes runs reproducible: the same Features sequence and seed give the same z sequence.
    """

    def __init__(self, image_latents, mode="weighted", interpolation="slerp", follow_s=None,
                 crossfade_s=0.75, seed=0, **mode_options):
        latents = _checked_latents(image_latents)
        if interpolation not in INTERPOLATIONS:
            raise UserError(f"unknown interpolation {interpolation!r}; expected one of: {', '.join(INTERPOLATIONS)}")
        self.image_latents, self.latent_shape = latents.reshape(len(latents), -1), latents.shape[1:]
        self.interpolation = interpolation
        self.interpolate = slerp if interpolation == "slerp" else lerp
        self.follow_s = None if follow_s is None else _positive("follow_s", follow_s, allow_zero=True)
        self.crossfade_s = _positive("crossfade_s", crossfade_s, allow_zero=True)
        self.rng = np.random.default_rng(seed)
        self.r = self.image_latents[0].copy()
        self.weights = np.eye(len(latents))[0]     # how much of each image r is made of (see step)
        self._image_set = 0                         # counts set_images: whose images a mode's are
        self.mode_name, self.mode, self._old_mode, self._fade = None, None, None, 1.0
        self.mode_options = {}
        self.bias = (None, 0.0)         # the audience's (image shares, mood): see set_bias
        self.set_mode(mode, **mode_options)
        self._fade = 1.0                # the first mode starts at once: nothing to fade from

    def set_mode(self, name, **mode_options):
        """Switch to mode `name` live: the old mode keeps running while its destination is
        cross-faded into the new one's over crossfade_s (smoothstep), so r never jumps."""
        if name not in MODE_CLASSES:
            raise UserError(f"unknown navigator mode {name!r}; expected one of: {', '.join(MODES)}")
        cls = MODE_CLASSES[name]
        if len(self.image_latents) < cls.min_images:
            raise UserError(f"navigator mode {name!r} needs at least {cls.min_images} images, got {len(self.image_latents)}")
        if cls is WeightedMode:
            mode_options = {"interpolation": self.interpolation, **mode_options}
        try:
            new = cls(self.image_latents, self.interpolate, self.rng, **mode_options)
        except TypeError as error:       # an option the mode does not have
            raise UserError(f"navigator mode {name!r}: {error}") from None
        new.start(self.r if self.r is not None else self.image_latents[0])
        new.image_set = self._image_set
        self._lean(new)
        self._old_mode, self._fade = self.mode, 0.0
        self.mode, self.mode_name, self.mode_options = new, name, mode_options

    def set_images(self, image_latents):
        """Swap the image set live (the browser's image-set control): the active mode starts
        afresh on the new latents, with its options, and is cross-faded from the old mode,
        which keeps running on the old latents, over crossfade_s, as a mode switch is."""
        latents = _checked_latents(image_latents)
        if latents.shape[1:] != self.latent_shape:
            raise UserError(f"new image latents are shaped {latents.shape[1:]}, the show's {self.latent_shape}")
        previous, previous_weights = self.image_latents, self.weights
        self.bias = (None, self.bias[1])   # the room's images were the old set's
        self.image_latents = latents.reshape(len(latents), -1)
        self._image_set += 1
        self.weights = np.zeros(len(latents))      # none of the new images is on screen yet
        try:
            self.set_mode(self.mode_name, **self.mode_options)
        except UserError:                # e.g. one image for a travelling mode: keep the old set
            self.image_latents, self.weights = previous, previous_weights
            self._image_set -= 1
            raise

    def resize_images(self, image_latents):
        """The same images encoded at another generation size (the live show stepping down when
        frames run late): every mode keeps its state (which image, how far along, its weights)
        and only its latents change, and r takes the new destination on the next step, so the
        picture stays where it was and only its resolution changes."""
        latents = _checked_latents(image_latents)
        if len(latents) != len(self.image_latents):
            raise UserError(f"resize_images needs the same {len(self.image_latents)} images, got {len(latents)}")
        old, new = self.image_latents, latents.reshape(len(latents), -1)
        for mode in (self.mode, self._old_mode):
            if mode is not None:       # a mode may hold its latents reordered (weighted's roll)
                order = [int(np.argmin(np.linalg.norm(old - row, axis=1))) for row in mode.latents]
                mode.latents = new[order]
        self.image_latents, self.latent_shape = new, latents.shape[1:]
        self.r = None                  # taken from the destination at the next step

    def next_image(self):
        """Make the active mode head for the next image (see each mode's next_image). The
        destination cross-fades over crossfade_s from a copy of the mode as it was (which keeps
        running meanwhile), so nothing jumps. During a fade already under way (a mode switch or
        a previous press) that fade goes on, and only its new side changes."""
        if self._old_mode is None or self._fade >= 1.0:
            self._old_mode, self._fade = copy.copy(self.mode), 0.0   # its updates rebind, never mutate
        self.mode.next_image()

    def set_temperature(self, temperature):
        """The weighted mode's softmax temperature, live: applied to a weighted mode running now
        (also one fading out); other modes ignore it. Returns the checked value."""
        temperature = _positive("temperature", temperature)
        for mode in (self.mode, self._old_mode):
            if isinstance(mode, WeightedMode):
                mode.temperature = temperature
        return temperature

    def set_bias(self, image_shares=None, mood=0.0):
        """The audience's lean (outputs/web/audience.py counts the votes; the live show passes
        them on while the VJ's `audience` switch is on): `image_shares` (n,), the room's share
        behind each image of the set shown (0..1), or None; `mood` -1 (calm) .. 1 (intense).
        Explore picks its next target with odds leaning toward the shares, weighted leans its
        blend toward them, and the mood scales the travelling modes' motion and weighted's
        temperature (MOOD_*). set_bias(None, 0) is the show as it is without an audience."""
        shares = None
        if image_shares is not None:
            shares = np.asarray(image_shares, dtype=np.float64)
            if shares.shape != (len(self.image_latents),) or not np.all(np.isfinite(shares)):
                raise UserError(f"audience shares must be {len(self.image_latents)} numbers, "
                                f"got {image_shares!r}")
            shares = np.clip(shares, 0.0, 1.0)
        self.bias = (shares, float(np.clip(mood, -1.0, 1.0)))
        for mode in (self.mode, self._old_mode):
            if mode is not None:
                self._lean(mode)

    def _lean(self, mode):
        """Give a mode the audience's lean (a mode on a set swapped out gets the mood only)."""
        shares, mood = self.bias
        same = getattr(mode, "image_set", self._image_set) == self._image_set
        mode.audience = shares if same and shares is not None and len(shares) == len(mode.latents) else None
        mode.drive_gain = 1.0 + MOOD_DRIVE * mood
        mode.temperature_gain = 2.0 ** (-MOOD_TEMPERATURE * mood)

    def step(self, features, dt_s):
        """Advance dt_s seconds with these Features; returns z (float32, one image latent's shape).
        `weights` then holds how much of each image z is made of (n,): the modes' weights, cross-
        faded and followed exactly as z is (linearly), exact at the images themselves."""
        d, weights = self.mode.destination(features, dt_s), self.mode.weights()
        if self._old_mode is not None and self._fade < 1.0:
            self._fade = min(1.0, self._fade + dt_s / self.crossfade_s) if self.crossfade_s > 0 else 1.0
            s = self._fade * self._fade * (3 - 2 * self._fade)
            d = self.interpolate(self._old_mode.destination(features, dt_s), d, s)
            weights = (1.0 - s) * self._same_images(self._old_mode) + s * weights
        if self._fade >= 1.0:
            self._old_mode = None
        follow_s = self.mode.follow_s if self.follow_s is None else self.follow_s
        if self.r is None:             # just resized: start from the destination at the new size
            self.r = d
        coefficient = float(smoothing_coefficient(follow_s, dt_s))
        self.r = self.interpolate(self.r, d, coefficient)
        self.weights = self.weights + coefficient * (weights - self.weights)
        return self.r.reshape(self.latent_shape).astype(np.float32)

    def _same_images(self, mode):
        """A mode's weights, where it runs on the images shown now; a mode fading out on a set
        swapped out (of any size, the same too) counts for none of the new set's images: its
        detail fades out with it."""
        if getattr(mode, "image_set", 0) != self._image_set:
            return np.zeros(len(self.image_latents))
        return mode.weights()
