"""Frame and generation sizes: parsed, checked against what the model can draw and the memory it
needs, named ("WxH"), and the ladder the live show steps along."""

import os

from ..errors import UserError
from .generator import check_size

MAX_FRAME = (7680, 4320)  # the largest output frame accepted (8K UHD)


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


def area(size):
    """Pixels in a (W, H) size or a "WxH" text."""
    width, height = (int(n) for n in size.split("x")) if isinstance(size, str) else size
    return width * height


def scaled_ladder(output_size):
    """bench.LADDER (16:9 sizes) at the output's aspect: the same widths, even heights, with
    32 wide below them, so a machine too busy for 64x36 still has somewhere to step down to."""
    from .bench import LADDER

    width, height = output_size
    return [(w, max(2, round(w * height / width / 2) * 2)) for w, _ in ((32, 18), *LADDER)]
