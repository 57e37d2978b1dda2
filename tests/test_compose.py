"""The compositor (compose.py): exact at the images, detail only where the frame shows it, the
weights and layers it is given checked, and each method's relation to a plain bilinear scale.

Real photos (the bundled demo images) and the real flow's frames where a test needs the flow's
in-betweens."""

import cv2
import numpy as np
import pytest

from flowvj.compose import (
    DETAIL_METHODS,
    MAP_ONE,
    Compositor,
    DetailLayers,
    _solve,
    check_detail,
    fill_matrix,
    scale_to,
)
from flowvj.errors import UserError
from flowvj.images import DEFAULT_IMAGES, load_show_images, resize_images

OUT = (640, 360)    # the tests' output size: the same code as 1280x720, a quarter of the pixels


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def photos():
    return load_show_images([DEFAULT_IMAGES], OUT)[:4]


def one_hot(n, k, amount=1.0):
    weights = np.zeros(n)
    weights[k] = amount
    return weights


@pytest.mark.parametrize("gen", [(128, 72), (192, 108), (64, 64)])
def test_each_image_alone_is_its_original_exactly(photos, gen):
    """A frame that is image k (as the flow encoded it) with all the weight on k comes out as the
    original at the output size, bit for bit: at the live ladder's sizes and at a square size,
    whose scale crops (aspect-fill)."""
    small = resize_images(photos, gen)
    compositor = Compositor(OUT)
    compositor.use(compositor.prepare(photos, small))
    for k in range(len(photos)):
        out = compositor.compose(small[k], one_hot(len(photos), k))
        assert out.shape == (OUT[1], OUT[0], 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, photos[k])


def test_off_is_a_bilinear_scale_and_beats_it_at_the_images(photos):
    small = resize_images(photos, (128, 72))
    off = Compositor(OUT, method="off").compose(small[0])
    np.testing.assert_array_equal(off, cv2.resize(small[0], OUT, interpolation=cv2.INTER_LINEAR))
    assert psnr(off, photos[0]) < 35       # the soft blow-up the issue measured (33.7 dB at 720p)


def test_sharpen_adds_high_frequencies_and_amount_zero_is_the_scale(photos):
    small = resize_images(photos, (128, 72))
    plain = Compositor(OUT, method="off").compose(small[1])
    sharp = Compositor(OUT, method="sharpen", amount=1.0).compose(small[1])
    none = Compositor(OUT, method="sharpen", amount=0.0).compose(small[1])
    np.testing.assert_array_equal(none, plain)

    def high(image):
        image = image.astype(np.float32)
        return np.mean((image - cv2.GaussianBlur(image, (0, 0), 2.0)) ** 2)
    assert high(sharp) > 1.3 * high(plain)


def test_amount_scales_the_detail(photos):
    """Amount 0 adds none (the notched scale), 1 the original's, 2 twice as much."""
    small = resize_images(photos, (128, 72))
    compositor = Compositor(OUT)
    compositor.use(compositor.prepare(photos, small))
    weights = one_hot(len(photos), 2)
    energies = []
    for amount in (0.0, 0.5, 1.0, 2.0):
        compositor.amount = amount
        out = compositor.compose(small[2], weights).astype(np.float32)
        energies.append(np.mean((out - cv2.GaussianBlur(out, (0, 0), 3.0)) ** 2))
    assert energies[0] < energies[1] < energies[2] < energies[3]


def test_zero_weights_add_no_detail(photos):
    """Images with no weight (below MIN_WEIGHT) add nothing: the same output as without them."""
    small = resize_images(photos, (128, 72))
    compositor = Compositor(OUT)
    compositor.use(compositor.prepare(photos, small))
    frame = ((small[0].astype(np.uint16) + small[1]) // 2).astype(np.uint8)
    pair = np.array([0.5, 0.495, 0.0, 0.0])
    tiny = np.array([0.5, 0.495, 0.005, 0.0])
    np.testing.assert_array_equal(compositor.compose(frame, pair), compositor.compose(frame, tiny))


def test_no_ghost_of_an_image_the_frame_does_not_show(photos):
    """Weights that say half of image 1 over a frame of image 0 alone (the navigator's weights
    are the latent's mix, and the flow's frame may not show it): the detail of image 1 found in
    the output is under a tenth of its layer; adding the detail by the weights alone puts half
    there (the ghosting the issue saw)."""
    small = resize_images(photos, (128, 72))
    compositor = Compositor(OUT)
    compositor.use(compositor.prepare(photos, small))
    alone = compositor.compose(small[0], one_hot(4, 0)).astype(np.float32)
    told = compositor.compose(small[0], np.array([0.5, 0.5, 0.0, 0.0])).astype(np.float32)
    detail = photos[1].astype(np.float32) - scale_to(small[1], OUT).astype(np.float32)
    assert np.sum((told - alone) * detail) / np.sum(detail * detail) < 0.1


def test_a_cross_fade_gets_both_details(photos):
    """Where the frame is a cross-fade of two images, the output carries both details, as a
    cross-fade of the originals does: far closer to that than the plain scale is."""
    small = resize_images(photos, (128, 72))
    compositor = Compositor(OUT)
    compositor.use(compositor.prepare(photos, small))
    frame = np.round(0.5 * small[0].astype(np.float32) + 0.5 * small[3]).astype(np.uint8)
    out = compositor.compose(frame, np.array([0.5, 0.0, 0.0, 0.5]))
    ideal = np.round(0.5 * photos[0].astype(np.float32) + 0.5 * photos[3]).astype(np.uint8)
    plain = Compositor(OUT, method="off").compose(frame)
    assert psnr(out, ideal) > psnr(plain, ideal) + 3


def test_layers_of_another_set_or_size_are_not_used(photos):
    """While a set or a size is being swapped the frame may not match the layers: it is scaled
    with no detail (never an error, never another image's detail)."""
    small = resize_images(photos, (128, 72))
    compositor = Compositor(OUT)
    compositor.use(compositor.prepare(photos, small))
    plain = compositor.compose(small[0], None)
    other_size = resize_images(photos, (192, 108))[0]
    assert compositor.compose(other_size, one_hot(4, 0)).shape == (OUT[1], OUT[0], 3)
    np.testing.assert_array_equal(compositor.compose(small[0], one_hot(6, 0)), plain)
    assert psnr(plain, photos[0]) < 40 and compositor.needs_originals


def test_detail_layers_are_checked_and_compact(photos):
    small = resize_images(photos, (128, 72))
    with pytest.raises(ValueError, match="4 originals at 1280x720"):
        DetailLayers(photos[:3], small, (1280, 720), 0.5)
    layers = DetailLayers(photos, small, OUT, 0.5)
    assert layers.positive.dtype == np.uint8 and len(layers) == 4
    assert layers.nbytes < 2.1 * photos.nbytes      # two uint8 halves, and the small lumas


def test_check_detail_names_the_flag():
    assert check_detail("off") == "off" and "transfer" in DETAIL_METHODS
    with pytest.raises(UserError, match="--detail blurry: expected one of transfer, sharpen, off"):
        check_detail("blurry")
    with pytest.raises(UserError):
        Compositor(OUT, method="bicubic")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_small_systems_solved_as_numpy_does(n):
    rng = np.random.default_rng(n)
    a = rng.random((200, n, n)).astype(np.float32)
    a = a @ a.transpose(0, 2, 1) + np.eye(n, dtype=np.float32)
    b = rng.random((200, n)).astype(np.float32)
    np.testing.assert_allclose(_solve(a, b), np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-4, atol=1e-5)


def test_fill_matrix_maps_centres_as_resize_does():
    """Same aspect: warpAffine with the fill matrix is cv2.resize; a square to 16:9 keeps the
    middle rows (the overhang cropped, no bars)."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (72, 128, 3), dtype=np.uint8), (0, 0), 2.0)
    warped = cv2.warpAffine(image, fill_matrix((128, 72), OUT), OUT, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    resized = cv2.resize(image, OUT, interpolation=cv2.INTER_LINEAR)
    assert np.abs(warped.astype(int) - resized).max() <= 1
    square = np.zeros((64, 64, 3), np.uint8)
    square[:, :, 0] = np.arange(64)[:, None] * 4          # rows of rising red
    filled = scale_to(square, OUT)
    assert filled.shape == (360, 640, 3)
    assert 40 < filled[0, 0, 0] < 80 and 180 < filled[-1, 0, 0] < 220     # middle rows kept


def test_map_resolution_keeps_the_endpoints_exact():
    """A coefficient of 1 is MAP_ONE in the uint8 maps: multiplied and scaled back exactly."""
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ones = np.full_like(values, MAP_ONE)
    np.testing.assert_array_equal(cv2.multiply(values, ones, scale=1.0 / MAP_ONE), values)
