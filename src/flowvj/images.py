"""The user's images, as a show or a comparison takes them: checked before anything loads, loaded
at any size and mode, aspect-filled to the size the flow draws at. Shared by the show and the lab
(compare), so it sits below both, beside data.py, which decodes the files."""

from pathlib import Path

import numpy as np

from .data import (
    IMAGE_EXTENSIONS,
    fit_square,
    list_image_files,
    load_image,
    load_image_folder,
)
from .errors import UserError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_IMAGES = ASSETS / "images"


def check_image_specs(specs, flag="--images"):
    """Refuse, before anything loads, what cannot be an image set: a missing path, a file that
    is not an image, a folder with no images in it. Returns the specs as Paths."""
    expected = f"expected a folder of images or an image file ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    paths = [Path(spec) for spec in specs]
    for path in paths:
        if not path.exists():
            raise UserError(f"{flag} {path} does not exist; {expected}")
        if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UserError(f"{flag} {path} is not an image file; {expected}")
        if path.is_dir() and not list_image_files(path.resolve()):
            raise UserError(f"{flag} {path} holds no images; {expected}")
    return paths


def load_show_images(specs, size):
    """The user's images: folders and/or files, any size and mode -> uint8 (N, H, W, 3),
    aspect-filled (scaled to cover, centre-cropped) to `size`: (width, height), or an int side.

    specs: list of paths; None means the bundled demo images.
    """
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


    return np.stack([np.asarray(fit_square(Image.fromarray(image), size)) for image in images])


def same_aspect(size, other):
    """Whether (w, h) sizes have exactly the same aspect ratio (192x108 and 1280x720 do)."""
    return size[0] * other[1] == size[1] * other[0]


def images_at(size, originals, specs):
    """The show's images at generation size `size` = (w, h), given `originals` (uint8 (N, H, W, 3),
    aspect-filled at the output size): scaled down from them where the aspect is the same (the
    live ladder's sizes are: no file is read again), else read again from `specs`, so that each is
    aspect-filled from the whole image, as the compositor fills the output from the frame."""
    originals = np.asarray(originals)
    if same_aspect(size, (originals.shape[2], originals.shape[1])):
        return resize_images(originals, size)
    return load_show_images(specs, size)


def load_originals(specs, out_size, gen_size):
    """(originals at the output size `out_size`, the show's images at `gen_size`): the two image
    arrays a show with a compositor (compose.py) takes, the files read once where the aspects
    agree."""
    originals = load_show_images(specs, out_size)
    return originals, images_at(gen_size, originals, specs)
