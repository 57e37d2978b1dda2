"""The live show with numpy's BLAS on one thread (show/threads.py) against BLAS left at its own
pool (the machine's core count), with the compositor on (--detail transfer) and off, in one run.

`flowvj play --silent --gen-size 192x108 --fps 30 --duration D --stats` in a dummy SDL window
(1280x720), the variants interleaved round by round so a busy moment hits them all alike. The
baseline is the same code with threadpoolctl's limit made a no-op in the child process. Prints,
per variant, the median over rounds of: median fps, mean fps, p95 frame ms, compose ms; writes
blas_threads.json beside itself. Check `uptime` first: other work on the two cores reads slow.

    .venv/bin/python benchmarks/live/blas_threads.py [--rounds 3] [--seconds 20]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
CHILD = """
import sys, threadpoolctl
if sys.argv[1] == "own-pool":
    threadpoolctl.threadpool_limits = lambda *args, **kwargs: None   # the library's own pool
from flowvj.cli import main
sys.argv = ["flowvj"] + sys.argv[2:]
sys.exit(main())
"""
KEYS = ("median_fps", "mean_fps", "p95_frame_ms", "compose_ms")


def run_show(blas, detail, seconds, folder):
    stats = Path(folder) / "stats.json"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")
    args = ["play", "--silent", "--gen-size", "192x108", "--fps", "30", "--duration", str(seconds),
            "--detail", detail, "--stats", str(stats)]
    result = subprocess.run([str(PYTHON), "-c", CHILD, blas, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"flowvj {' '.join(args)}: {result.stderr[-2000:]}")
    return json.loads(stats.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    variants = [(blas, detail) for detail in ("transfer", "off") for blas in ("one-thread", "own-pool")]
    runs = {variant: [] for variant in variants}
    results = {"load_before": os.getloadavg()[0], "rounds": args.rounds, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for blas, detail in variants:
                stats = run_show(blas, detail, args.seconds, folder)
                runs[(blas, detail)].append({key: stats[key] for key in KEYS})
                print(f"round {round_ + 1}: BLAS {blas:10s} --detail {detail:8s} "
                      + ", ".join(f"{key} {stats[key]:.1f}" for key in KEYS), flush=True)
    results["load_after"] = os.getloadavg()[0]
    results["variants"] = {}
    print(f"\nmedian of {args.rounds} rounds of {args.seconds:g} s (load {results['load_before']:.2f} before, "
          f"{results['load_after']:.2f} after)")
    for (blas, detail), rows in runs.items():
        summary = {key: statistics.median(row[key] for row in rows) for key in KEYS}
        results["variants"][f"{blas} {detail}"] = {"median": summary, "runs": rows}
        print(f"BLAS {blas:10s} --detail {detail:8s} " + ", ".join(f"{k} {v:.1f}" for k, v in summary.items()))
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
