"""The compositor: the flow's small frame and the navigator's blend weights -> the frame at the
output's size, once a frame, for every output (window, page, NDI, recorder, render).

Why: the flow draws in time only at a small size (192x108 live on two cores), and a plain
bilinear blow-up to 1280x720 is soft and magnifies the checkerboard couplings' pattern. But the
user gave us the images at full resolution, and the navigator knows how much of each image the
frame is made of (Navigator.weights). So the flow draws the low frequencies and the detail comes
from the originals:

    out = up(notch(F)) + sum_k a_k(x) * D_k,    D_k = original_k - up(notch(L_k))

where F is the flow's frame, L_k image k as the flow encoded it (at the generation size), up the
bilinear scale to the output (aspect-filled), notch a [1, 2, 1] blur at the generation size that
removes the checkerboard's period, and D_k the detail layer, made once per image when a set loads.
At an image (F = L_k, a_k = 1) the output is the original exactly, whatever up and notch do.

The coefficient maps a_k (method "transfer") say where image k's detail belongs: at the
generation size, F's luma is regressed locally (a (2r+1)^2 window) on the active images' lumas,
ridge-regularised toward the navigator's weights, and gated by how well that mix of the images'
local means gives the frame's.
Where the frame is locally a cross-fade of two images, both details come in as much as the frame
shows them; where the frame holds structure of neither (the flow's own in-between), little
detail is added, so no edge of one image is drawn over another's structure (ghosting). Adding
the details with the weights alone (the first prototype) drew those ghosts: half of the other
image's detail layer was added over a frame that did not show it; gating by local agreement
alone removed the detail in the middle of a morph (benchmarks/compose/detail_methods.py has the
figures of all the methods tried, chosen by cross-validation over the shared images).

Cost at 1280x720 (cv2, one core): the scale of the frame, and per active image (the weights
above MIN_WEIGHT, at most MAX_IMAGES) one map scaled up and two saturating uint8 multiplies and
adds: every per-pixel pass at the output size is an OpenCV SIMD loop over uint8 (numpy's float
passes were 3-5x slower). The detail layers are kept as two uint8 halves (positive, negative):
2 bytes a pixel a channel, 5.5 MB an image at 720p.
"""

import numpy as np

from .errors import UserError

DETAIL_METHODS = ("transfer", "sharpen", "off")
DEFAULT_DETAIL = "transfer"
MIN_WEIGHT, MAX_IMAGES = 0.01, 2    # images whose detail a frame may wear: the two heaviest (a
                                    # morph's pair; a third cost 5-6 ms more and added little)
MAP_ONE = 64                        # a coefficient of 1 as a uint8 map value (up to 3.98)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


_CV2 = None


def opencv():
    """OpenCV, imported on first use (the CLI's --help loads none of it) and set to one thread
    once: the decode has the other core (see the live loop); not again on every call."""
    global _CV2
    if _CV2 is None:
        import cv2

        cv2.setNumThreads(1)
        _CV2 = cv2
    return _CV2


def check_detail(method, flag="--detail"):
    if method not in DETAIL_METHODS:
        raise UserError(f"{flag} {method}: expected one of {', '.join(DETAIL_METHODS)}")
    return method


def fill_matrix(in_size, out_size):
    """The 2x3 affine map that scales an image of `in_size` (w, h) uniformly to cover `out_size`
    (W, H), centred (the overhang cropped): pixel centres mapped as cv2.resize maps them."""
    (w, h), (out_w, out_h) = in_size, out_size
    scale = max(out_w / w, out_h / h)
    return np.array([[scale, 0.0, 0.5 * scale - 0.5 + (out_w - w * scale) / 2],
                     [0.0, scale, 0.5 * scale - 0.5 + (out_h - h * scale) / 2]], np.float64)


def scale_to(image, out_size):
    """An (h, w[, c]) uint8 or float32 image scaled bilinearly to fill `out_size` = (W, H):
    cv2.resize when the aspect is the output's (the live ladder's sizes are), else warpAffine."""
    cv2 = opencv()
    h, w = image.shape[:2]
    out_w, out_h = out_size
    if w * out_h == h * out_w:
        return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return cv2.warpAffine(image, fill_matrix((w, h), out_size), (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def notch(image, strength):
    """Blend `strength` of a separable [1, 2, 1] / 4 blur into a small uint8 image (float32 out):
    at strength 1 the checkerboard (the generation grid's period 2) is removed entirely, at 0.5
    halved; the smooth parts hardly change."""
    cv2 = opencv()
    image = np.asarray(image, np.float32)
    if strength <= 0:
        return image
    kernel = np.array([0.25, 0.5, 0.25], np.float32)
    blurred = cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    return image + strength * (blurred - image)


def _low(image, strength):
    """What the compositor makes of a small frame before the scale: notched, rounded to uint8."""
    return np.clip(notch(image, strength) + 0.5, 0, 255).astype(np.uint8)


def _solve(system, target):
    """Per pixel, the solution of system (..., n, n) x = target (..., n) for n <= 3, by cofactors:
    np.linalg.solve took 12 ms for the 20,736 2x2 systems of a 192x108 frame, this 0.3 ms. The
    systems are ridge-regularised (the diagonal >= ridge > 0), so they are never singular."""
    n = system.shape[-1]
    a = [[system[..., i, j] for j in range(n)] for i in range(n)]
    t = [target[..., i] for i in range(n)]
    if n == 1:
        return (t[0] / a[0][0])[..., None]
    if n == 2:
        det = a[0][0] * a[1][1] - a[0][1] * a[1][0]
        return np.stack([(a[1][1] * t[0] - a[0][1] * t[1]) / det,
                         (a[0][0] * t[1] - a[1][0] * t[0]) / det], axis=-1)
    cof = [[a[(i + 1) % 3][(j + 1) % 3] * a[(i + 2) % 3][(j + 2) % 3]
            - a[(i + 1) % 3][(j + 2) % 3] * a[(i + 2) % 3][(j + 1) % 3] for j in range(3)] for i in range(3)]
    det = a[0][0] * cof[0][0] + a[0][1] * cof[0][1] + a[0][2] * cof[0][2]
    return np.stack([(cof[0][j] * t[0] + cof[1][j] * t[1] + cof[2][j] * t[2]) / det for j in range(3)],
                    axis=-1)


class DetailLayers:
    """Per image of a set, made once when it loads (pure: safe in a background thread):
    `low_luma` (N, h, w) float32, the images as the flow encoded them, notched, in luma (for the
    coefficient maps), and the detail layers' positive and negative halves, uint8 (N, H, W, 3)."""

    def __init__(self, originals, show_images, out_size, strength):
        originals, show_images = np.asarray(originals), np.asarray(show_images)
        out_w, out_h = out_size
        if originals.shape[1:] != (out_h, out_w, 3) or len(originals) != len(show_images):
            raise ValueError(f"detail layers need {len(show_images)} originals at {out_w}x{out_h}, "
                             f"got {originals.shape}")
        self.out_size, self.strength = (out_w, out_h), float(strength)
        self.gen_size = (show_images.shape[2], show_images.shape[1])
        self.low_luma = np.stack([notch(image, strength) @ LUMA for image in show_images])
        self.positive = np.empty(originals.shape, np.uint8)
        self.negative = np.empty(originals.shape, np.uint8)
        cv2 = opencv()
        for k, (original, image) in enumerate(zip(originals, show_images)):
            base = scale_to(_low(image, strength), out_size)
            cv2.subtract(original, base, dst=self.positive[k])      # saturating: the + half
            cv2.subtract(base, original, dst=self.negative[k])      # the - half

    def __len__(self):
        return len(self.low_luma)

    @property
    def nbytes(self):
        return self.positive.nbytes + self.negative.nbytes + self.low_luma.nbytes


class Compositor:
    """The frame at the output's size: `compose(frame, weights)` once a frame.

    method: "transfer" (detail from the originals, see the module docstring), "sharpen" (an
    unsharp mask at the output size: the cheap baseline, no originals needed) or "off" (a plain
    bilinear scale, as before the compositor). `amount` (0..2) scales the detail, live.
    radius, ridge, agree, strength, prior_power: the transfer's window radius (px at the
    generation size), its pull toward the prior (the navigator's weights to `prior_power`: 2
    pulls a half-way image's coefficient to 0.25, so detail finer than the generation size, which
    the frame cannot vouch for, comes in only where the frame shows that image; 1 drew a
    goldfish's scales and eye over a frame that showed a faint blob of it), the local mean
    difference (luma levels) at which the gate is 1/e, the notch's strength; chosen by
    benchmarks/compose/detail_methods.py.
    """

    def __init__(self, out_size=(1280, 720), method=DEFAULT_DETAIL, amount=1.0, radius=2, ridge=100.0,
                 agree=80.0, strength=0.5, sharpen_sigma=1.0, prior_power=2.0):
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.method = check_detail(method)
        self.amount = float(amount)
        self.radius, self.ridge = int(radius), float(ridge)
        self.agree, self.strength = float(agree), float(strength)
        self.sharpen_sigma = float(sharpen_sigma)
        self.prior_power = float(prior_power)
        self.layers = None

    @property
    def needs_originals(self):
        return self.method == "transfer"

    def prepare(self, originals, show_images):
        """The detail layers of an image set (None where the method needs none): pure, for a
        background thread; swap them in with `use`."""
        if not self.needs_originals:
            return None
        return DetailLayers(originals, show_images, self.out_size, self.strength)

    def use(self, layers):
        self.layers = layers

    def compose(self, frame, weights=None, layers=None):
        """uint8 (h, w, 3) at the generation size + the navigator's weights (n,) -> uint8 (H, W, 3)
        at the output size. `layers`: the detail layers to use (default: those given to `use`;
        the live show passes the layers of the state each frame was navigated in). Layers of
        another image count or generation size are not used (their set or size is being
        swapped): the frame is then scaled with no detail."""
        cv2 = opencv()
        frame = np.ascontiguousarray(frame)
        if self.method == "off":
            return scale_to(frame, self.out_size)
        if self.method == "sharpen":
            base = scale_to(frame, self.out_size)
            if self.amount <= 0:
                return base
            blurred = cv2.GaussianBlur(base, (0, 0), self.sharpen_sigma)
            return cv2.addWeighted(base, 1.0 + self.amount, blurred, -self.amount, 0.0)
        layers = self.layers if layers is None else layers
        usable = (layers is not None and weights is not None and len(weights) == len(layers)
                  and layers.gen_size == (frame.shape[1], frame.shape[0]))
        low = notch(frame, self.strength)
        base = scale_to(np.clip(low + 0.5, 0, 255).astype(np.uint8), self.out_size)
        if not usable or self.amount <= 0:
            return base
        scratch = self._scratch()
        for k, coefficient in self.coefficient_maps(low @ LUMA, np.asarray(weights, np.float64), layers):
            scaled = np.clip(coefficient * (self.amount * MAP_ONE) + 0.5, 0, 255).astype(np.uint8)
            low_value, high_value = int(scaled.min()), int(scaled.max())
            if high_value == 0:
                continue            # gated out everywhere: nothing of this image's detail belongs
            if low_value == high_value == MAP_ONE:      # the image itself, at amount 1: no multiply
                plus, minus = layers.positive[k], layers.negative[k]
            else:       # the map scaled in one channel and merged: cheaper than scaling three
                scratch["map"][...] = scale_to(scaled, self.out_size)
                cv2.merge((scratch["map"],) * 3, dst=scratch["map3"])
                plus, minus = scratch["plus"], scratch["minus"]
                cv2.multiply(layers.positive[k], scratch["map3"], dst=plus, scale=1.0 / MAP_ONE)
                cv2.multiply(layers.negative[k], scratch["map3"], dst=minus, scale=1.0 / MAP_ONE)
            cv2.add(base, plus, dst=base)           # saturating; one image's two halves never
            cv2.subtract(base, minus, dst=base)     # overlap, so an image alone is exact
        return base

    def _scratch(self):
        """Buffers at the output size, made once: fresh 2.7 MB arrays each pass cost page faults
        (a multiply took 3.9 ms with a new output, ~1 ms into a buffer on the dev VM)."""
        width, height = self.out_size
        if getattr(self, "_buffers", None) is None or self._buffers["map"].shape != (height, width):
            self._buffers = {"map": np.empty((height, width), np.uint8),
                             "map3": np.empty((height, width, 3), np.uint8),
                             "plus": np.empty((height, width, 3), np.uint8),
                             "minus": np.empty((height, width, 3), np.uint8)}
        return self._buffers

    def coefficient_maps(self, luma, weights, layers=None):
        """[(image index, coefficient map (h, w) float32)] for the active images: the local ridge
        regression of the frame's luma on theirs (see the module docstring), gated by how well
        the coefficients' mix of the images' local means explains the frame's: a cross-fade
        passes, a frame that is one image while the weights say two does not (in its flat parts
        the ridge pulls the coefficients to the weights, whose mix of means is not the frame's)."""
        cv2 = opencv()
        active = [int(k) for k in np.argsort(-weights)[:MAX_IMAGES] if weights[k] > MIN_WEIGHT]
        if not active:
            return []
        size = (2 * self.radius + 1,) * 2

        def box(x):
            return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

        guides = [(layers or self.layers).low_luma[k] for k in active]
        mean_f = box(luma)
        means = [box(g) for g in guides]
        prior = np.array([weights[k] for k in active], np.float32) ** self.prior_power
        n = len(active)
        system = np.empty(luma.shape + (n, n), np.float32)
        target = np.empty(luma.shape + (n,), np.float32)
        for i in range(n):
            target[..., i] = box(guides[i] * luma) - means[i] * mean_f + self.ridge * prior[i]
            for j in range(i, n):
                system[..., i, j] = system[..., j, i] = box(guides[i] * guides[j]) - means[i] * means[j]
            system[..., i, i] += self.ridge
        solved = _solve(system, target)
        coefficients = np.clip(solved, 0.0, 1.5)
        explained = sum(coefficients[..., i] * means[i] for i in range(n))
        gate = np.exp(-np.square((mean_f - explained) / self.agree))
        return [(k, coefficients[..., i] * gate) for i, k in enumerate(active)]
