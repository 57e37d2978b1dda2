"""What the compositor costs the show: live frame rate and render speed, with --detail transfer,
off, and the commit before the compositor (a git worktree given by --base), in one run.

Live: `flowvj play --silent --gen-size 192x108 --fps 30 --duration D --stats` in a dummy SDL
window (1280x720), per --detail: median fps, p95 frame ms, the median compose ms. Render:
`flowvj render --gen-size 128x72 --size 1280x720 --duration R` of the demo track, wall time ->
frames per second (start-up included: the same model load and export in every variant), per
--detail and for the base checkout. Writes compose_cost.json beside itself.

    git worktree add /tmp/base HEAD~   # the commit before the compositor
    .venv/bin/python benchmarks/live/compose_cost.py --base /tmp/base [--live-s 60] [--render-s 20]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"


def flowvj(args, checkout=REPO, env=None):
    """Run flowvj from `checkout`'s sources (the venv's packages) -> (wall s, CompletedProcess)."""
    env = dict(os.environ, PYTHONPATH=str(Path(checkout) / "src"), SDL_VIDEODRIVER="dummy",
               SDL_RENDER_DRIVER="software", **(env or {}))
    started = time.perf_counter()
    code = "import sys; from flowvj.cli import main; sys.argv[0] = 'flowvj'; sys.exit(main())"
    result = subprocess.run([str(PYTHON), "-c", code, *map(str, args)], capture_output=True, text=True,
                            env=env)
    if result.returncode != 0:
        raise RuntimeError(f"flowvj {' '.join(map(str, args))}: {result.stderr[-2000:]}")
    return time.perf_counter() - started, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="a checkout of the commit before the compositor (the baseline)")
    parser.add_argument("--live-s", type=float, default=60.0)
    parser.add_argument("--render-s", type=float, default=20.0)
    args = parser.parse_args()
    results = {"live": {}, "render": {}}
    with tempfile.TemporaryDirectory() as folder:
        for detail in ("transfer", "off"):
            stats = Path(folder) / f"{detail}.json"
            flowvj(["play", "--silent", "--gen-size", "192x108", "--fps", "30", "--duration", args.live_s,
                    "--detail", detail, "--stats", stats])
            s = json.loads(stats.read_text())
            keys = ("frames", "median_fps", "p95_frame_ms", "mean_fps", "compose_ms", "gen_size", "errors")
            results["live"][detail] = {k: s.get(k) for k in keys}
            print(f"play --detail {detail}: median {s['median_fps']:.1f} fps, p95 {s['p95_frame_ms']:.1f} "
                  f"ms, compose {s.get('compose_ms', 0):.1f} ms, at {s['gen_size']}", flush=True)
        variants = [("transfer", REPO, ["--detail", "transfer"]), ("off", REPO, ["--detail", "off"])]
        if args.base:
            variants.append(("before the compositor", Path(args.base), []))
        frames = round(args.render_s * 30)
        for name, checkout, extra in variants:
            wall, _ = flowvj(["render", "--gen-size", "128x72", "--size", "1280x720", "--duration",
                              args.render_s, "-o", Path(folder) / "r.mp4", *extra], checkout)
            results["render"][name] = {"wall_s": wall, "frames": frames, "fps": frames / wall}
            print(f"render {name}: {frames} frames in {wall:.1f} s: {frames / wall:.1f} frames/s", flush=True)
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
