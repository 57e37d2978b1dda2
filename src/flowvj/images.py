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
