"""Where one decode's time goes, and what each lever of the export and the session buys (issue 27).

The bundled CPU model (hires) decodes batch 1 through ONNX Runtime in each variant below; every
variant is timed at each size on 1 and 2 intra-op threads, round-robin (one call of each variant,
repeated for --seconds), so a machine that gets busier or quieter moves them all alike. Each
figure is a median in ms with its ratio to `today` measured in the same cell.

    today            the export before issue 27 (fast.export_inverse_onnx(lean=False)): the plain
                     trace of the folded model's inverse, ORT_ENABLE_ALL, idle threads sleep
    today EXTENDED   the same graph without ONNX Runtime's layout level (no NCHWc convolutions)
    lean             fast.LeanInverse, what OnnxInverse builds now: masks once per resolution, the
                     coupling's mask arithmetic cut to what changes a value, out_norm folded into
                     the skips, static Splits, one DepthToSpace per unsqueeze
    lean EXTENDED    the lean graph without the layout level
    lean spin        the lean graph with worker threads spinning during a run only
                     (session.intra_op.allow_spinning=1, session.force_spinning_stop=1)
    lean fixed       the lean graph exported at the cell's exact size (no dynamic axes): the
                     masks become constants, folded at export

On one thread ONNX Runtime runs on the calling thread, so the 1-thread cells also report the
thread's CPU time (`cpu`), which a busy machine inflates far less than wall time.

Each variant's frames are checked against today's first: the largest difference of the uint8
frames (Generator._frame's rounding), which must stay <= 1 level.

`--profile` also prints ONNX Runtime's per-operator time for today and lean at the largest size
on one thread, their calls interleaved (the profiler itself adds to every op's time).

    .venv/bin/python benchmarks/flow/decode_profile.py [--sizes 128x72,192x108,256x144]
        [--seconds 8] [--profile] [--json [PATH]]
"""

import argparse
import collections
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from flowvj.flow import fast, load_model
from flowvj.flow.checkpoint import default_model
from flowvj.show.bench import parse_sizes, size_name

BESIDE = Path(__file__).resolve().with_suffix(".json")
VARIANTS = {  # name -> (graph, session options)
    "today": ("plain", {}),
    "today EXTENDED": ("plain", {"level": "ORT_ENABLE_EXTENDED"}),
    "lean": ("lean", {}),
    "lean EXTENDED": ("lean", {"level": "ORT_ENABLE_EXTENDED"}),
    "lean spin": ("lean", {"spin": True}),
    "lean fixed": ("fixed", {}),
}


def say(message):
    print(f"[decode_profile] {message}", file=sys.stderr, flush=True)


def fixed_size_export(fused, size):
    """The lean inverse traced at one (W, H), batch 1, no dynamic axes: shapes are constants."""
    z = torch.zeros(1, fused.config.in_channels, size[1], size[0])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fast.LeanInverse(fused).eval(), (z,), buf, input_names=["z"], output_names=["x"],
                          opset_version=17, dynamo=False)
    return buf.getvalue()


def session(onnx_bytes, threads, level="ORT_ENABLE_ALL", spin=False, profile_prefix=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def frame(x):
    """What Generator._frame makes of a float image: uint8, rounded."""
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def time_cell(sessions, z, seconds, min_rounds=8, max_rounds=400):
    """Round-robin over the variants -> ({name: [wall ms]}, {name: [thread cpu ms]})."""
    for s in sessions.values():  # ONNX Runtime plans its memory on the first call at a shape
        for _ in range(2):
            s.run(None, {"z": z})
    wall = {name: [] for name in sessions}
    cpu = {name: [] for name in sessions}
    t_end = time.perf_counter() + seconds
    done = wall["today"]  # one call of each variant per round
    while len(done) < min_rounds or (time.perf_counter() < t_end and len(done) < max_rounds):
        for name, s in sessions.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            s.run(None, {"z": z})
            cpu[name].append((time.thread_time() - c0) * 1e3)
            wall[name].append((time.perf_counter() - t0) * 1e3)
    return wall, cpu


def op_profiles(graphs, z, calls=20):
    """{name: {op type: ms per call}} from ONNX Runtime's profiler, one thread: each node's median
    over the calls (2 warm-up calls left out), summed by op type; the graphs' calls interleaved."""
    with tempfile.TemporaryDirectory() as folder:
        sessions = {n: session(g, 1, profile_prefix=os.path.join(folder, n)) for n, g in graphs.items()}
        for _ in range(calls + 2):
            for s in sessions.values():
                s.run(None, {"z": z})
        profiles = {}
        for n, s in sessions.items():
            with open(s.end_profiling()) as f:
                events = json.load(f)
            per_node = collections.defaultdict(list)  # (node, op) -> its time in every call, ms
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    per_node[e["name"], e["args"]["op_name"]].append(e["dur"] / 1e3)
            ms = collections.defaultdict(float)
            for (_, op), times in per_node.items():  # a node's median: a preempted call does not count
                ms[op] += float(np.median(times[2:]))
            profiles[n] = dict(sorted(ms.items(), key=lambda kv: -kv[1]))
    return profiles


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128x72,192x108,256x144", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per size and threads")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to time")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of VARIANTS")
    parser.add_argument("--profile", action="store_true", help="also print per-operator time, today and lean")
    parser.add_argument("--json", nargs="?", const=str(BESIDE), metavar="PATH",
                        help="also write every figure to PATH (alone: decode_profile.json here)")
    args = parser.parse_args()
    sizes = parse_sizes(args.sizes)
    thread_counts = [int(t) for t in args.threads.split(",")]
    names = ["today"] + [n for n in args.variants.split(",") if n != "today"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; expected some of {', '.join(VARIANTS)}")

    load_before = os.getloadavg()
    model = load_model(default_model("cpu"))
    fused = fast.fuse_for_inference(model)
    graphs = {"plain": fast.export_inverse_onnx(fused, lean=False), "lean": fast.export_inverse_onnx(fused)}
    rng = np.random.default_rng(0)
    cells, worst_levels = [], {}
    for size in sizes:
        z = (rng.standard_normal((1, 3, size[1], size[0])) * 0.8).astype(np.float32)
        graphs["fixed"] = fixed_size_export(fused, size)
        for threads in thread_counts:
            sessions = {n: session(graphs[VARIANTS[n][0]], threads, **VARIANTS[n][1]) for n in names}
            reference = frame(sessions["today"].run(None, {"z": z})[0]).astype(int)
            for n, s in sessions.items():
                level = int(np.abs(frame(s.run(None, {"z": z})[0]).astype(int) - reference).max())
                worst_levels[n] = max(worst_levels.get(n, 0), level)
            wall, cpu = time_cell(sessions, z, args.seconds)
            base, base_cpu = np.median(wall["today"]), np.median(cpu["today"])
            for n in names:
                cells.append({"variant": n, "size": size_name(size), "threads": threads,
                              "ms": float(np.median(wall[n])), "ratio": float(np.median(wall[n]) / base),
                              "p90_ms": float(np.percentile(wall[n], 90)), "calls": len(wall[n]),
                              "cpu_ms": float(np.median(cpu[n])) if threads == 1 else None,
                              "cpu_ratio": float(np.median(cpu[n]) / base_cpu) if threads == 1 else None})
            say(f"{size_name(size)} {threads}t: " + ", ".join(
                f"{c['variant']} {c['ms']:.1f}" for c in cells[-len(names):]))
    load_after = os.getloadavg()

    columns = [(size_name(s), t) for s in sizes for t in thread_counts]
    by = {(c["variant"], c["size"], c["threads"]): c for c in cells}
    print(f"load {load_before[0]:.1f} before, {load_after[0]:.1f} after; median ms (x today's, same run)")
    print("| variant | " + " | ".join(f"{s} {t}t" for s, t in columns) + " | max uint8 diff |")
    print("|---|" + "---|" * len(columns) + "---|")
    for n in names:
        print(f"| {n} | " + " | ".join(f"{by[(n, s, t)]['ms']:.1f} ({by[(n, s, t)]['ratio']:.2f})"
                                       for s, t in columns) + f" | {worst_levels[n]} |")
    if 1 in thread_counts:
        print("\none thread, CPU ms of the decoding thread (x today's)")
        print("| variant | " + " | ".join(size_name(s) for s in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for n in names:
            one = [by[(n, size_name(s), 1)] for s in sizes]
            print(f"| {n} | " + " | ".join(f"{c['cpu_ms']:.1f} ({c['cpu_ratio']:.2f})" for c in one) + " |")
    profiles = {}
    if args.profile:
        size = sizes[-1]
        z = (rng.standard_normal((1, 3, size[1], size[0])) * 0.8).astype(np.float32)
        profiles = op_profiles({"today": graphs["plain"], "lean": graphs["lean"]}, z)
        ops = list(dict.fromkeys([*profiles["today"], *profiles["lean"]]))
        print(f"\nONNX Runtime's profiler, {size_name(size)}, one thread: ms per decode by operator")
        print("| op | today | lean |\n|---|---|---|")
        for op in ops:
            print(f"| {op} | {profiles['today'].get(op, 0):.2f} | {profiles['lean'].get(op, 0):.2f} |")
        print(f"| all | {sum(profiles['today'].values()):.2f} | {sum(profiles['lean'].values()):.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cells": cells, "max_uint8_diff": worst_levels, "profile": profiles,
                       "load": {"before": load_before, "after": load_after}, "seconds": args.seconds,
                       "onnxruntime": ort.__version__, "torch": torch.__version__}, f, indent=1)
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
