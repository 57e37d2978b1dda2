"""Contact sheets at 720p: bilinear (`off`) beside the default detail method, for pairs of the
shared photos drawn by the bundled CPU model at 192x108, at t = 0, 0.25, 0.5, 0.75, 1 (rows: off,
then the method; each tile a 480x270 crop of the 1280x720 frame at its own pixels), plus the
whole 720p frames halfway, off and the method, to look at.

Usage: .venv/bin/python benchmarks/compose/contact_sheet.py [--out benchmarks/compose/sheets]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from flowvj.compose import DEFAULT_DETAIL, Compositor  # noqa: E402
from flowvj.images import load_show_images, resize_images  # noqa: E402
from flowvj.lab.compare_detail import OUTPUT_SIZE, SHEET_T, compare_detail  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "images"
PAIRS = (("mate_nature_Storm.jpg", "ukui_goldfish.jpg"), ("mate_nature_LadyBird.jpg", "skimage_coffee.png"))
GEN = (192, 108)


def main():
    from PIL import Image

    from flowvj.flow import load_model
    from flowvj.flow.checkpoint import default_model
    from flowvj.show.generator import Generator
    from flowvj.show.navigate import slerp

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).with_name("sheets")))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator = Generator(load_model(default_model("cpu")), size=GEN)
    figures = []
    for names in PAIRS:
        files = [next(SHARED.glob(Path(name).stem + ".*")) for name in names]
        originals = load_show_images(files, OUTPUT_SIZE)
        small = resize_images(originals, GEN)
        latents = generator.encode(small)
        flat = latents.reshape(2, -1).astype(np.float64)
        frames = generator.decode_batch(np.stack([slerp(flat[0], flat[1], t).reshape(latents.shape[1:])
                                                  .astype(np.float32) for t in SHEET_T]))
        stem = f"{Path(names[0]).stem}-{Path(names[1]).stem}"
        figures.append({"pair": names, **compare_detail(originals, small, frames, (0, 1), out / f"{stem}.jpg")})
        for method in ("off", DEFAULT_DETAIL):
            compositor = Compositor(OUTPUT_SIZE, method=method)
            compositor.use(compositor.prepare(originals, small))
            half = compositor.compose(frames[len(SHEET_T) // 2], np.array([0.5, 0.5]))
            Image.fromarray(half).save(out / f"{stem}-half-{method}.jpg", quality=90)
        print(json.dumps(figures[-1]["figures"]))
    (out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
