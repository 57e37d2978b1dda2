"""The automatic generation size under a load that comes and goes (issue 25, section 2).

    .venv/bin/python benchmarks/live/size_under_load.py [--minutes 10] [--hog-on-s 60] [--cycle-s 120]
                                                        [--fps F] [--min-gen-size WxH]

Runs the real show as a VJ would, `flowvj play --silent SET --gen-size auto --duration ...
--stats S.json` (headless: SDL's dummy video driver), where SET is the .ogg tracks of
../shared/data/music played one after another (the longest is under 5 minutes; the show ends
with its track), while one busy process (`python -c 'while True: pass'`) runs for --hog-on-s of
every --cycle-s: off first, so the show starts on the machine as it is, then on, off, ...

Prints, from the show's --stats: the sizes held (seconds at each), the frame rate per minute
beside the hog's share of that minute, the median frame rate of the minutes with and without
the hog (the baseline, measured in the same run), the worst one-second frame rate, the 5th
percentile, and every change of size and frame rate. Writes all of it to size_under_load.json
beside this script.

The loop's --stats gains `size_changes`, `fps_changes`, `fps_per_minute`, `min_fps_1s` and
`p5_fps` with issue 25; a show without them is reported as such, key by key (its `step_downs`
then stand in for the size changes), never guessed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
MUSIC = HERE.parents[2] / "shared" / "data" / "music"
FLOWVJ = Path(sys.executable).with_name("flowvj")
RESULT = HERE / "size_under_load.json"
NEW_KEYS = ("size_changes", "fps_changes", "fps_per_minute", "min_fps_1s", "p5_fps")


def write_set(path, seconds):
    """The music folder's .ogg tracks back to back (in name order, repeated if need be) until
    `seconds` are filled, as one FLAC; returns the track names used."""
    tracks = sorted(MUSIC.glob("*.ogg"))
    if not tracks:
        sys.exit(f"size_under_load: no .ogg tracks in {MUSIC} (the shared data is missing)")
    parts, names, total, rate = [], [], 0, None
    while total < seconds * (rate or 44100):
        for track in tracks:
            audio, track_rate = sf.read(track, dtype="float32", always_2d=True)
            if rate is None:
                rate = track_rate
            if track_rate != rate:
                continue        # the folder's tracks are all 44.1 kHz; a stray one is skipped
            parts.append(audio[:, :2] if audio.shape[1] >= 2 else np.repeat(audio, 2, axis=1))
            names.append(track.name)
            total += len(audio)
            if total >= seconds * rate:
                break
    sf.write(path, np.concatenate(parts), rate)
    return names


class Hog:
    """One busy process, switched on for on_s of every cycle_s (off first), in a thread of its
    own; `switches` records (seconds since start, "on"/"off")."""

    def __init__(self, on_s, cycle_s):
        self.on_s, self.cycle_s = on_s, cycle_s
        self.switches, self.process = [], None
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        off_s = self.cycle_s - self.on_s
        while not self._stop.wait(off_s - (time.monotonic() - self.started) % self.cycle_s):
            self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            self.switches.append((round(time.monotonic() - self.started, 2), "on"))
            self._stop.wait(self.on_s)
            self._end_process()
            self.switches.append((round(time.monotonic() - self.started, 2), "off"))

    def _end_process(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self._end_process()

    def share_on(self, start_s, end_s):
        """The share of [start_s, end_s) (seconds since the hog started) it was on."""
        if end_s <= start_s:
            return 0.0
        on, edges = 0.0, self.switches + [(float("inf"), "off")]
        for (t0, state), (t1, _) in zip(edges, edges[1:]):
            if state == "on":
                on += max(0.0, min(t1, end_s) - max(t0, start_s))
        return on / (end_s - start_s)


def run_show(track, seconds, args, workdir, hog_on_s, cycle_s):
    """The show with the hog switching; returns (its --stats, the Hog, when the show's loop began
    in the hog's seconds, the show's stdout)."""
    stats = workdir / "stats.json"
    command = [str(FLOWVJ), "play", str(track), "--silent", "--gen-size", "auto", "--duration", str(seconds),
               "--stats", str(stats)]
    command += ["--fps", str(args.fps)] if args.fps else []
    command += ["--min-gen-size", args.min_gen_size] if args.min_gen_size else []
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software",
               PYGAME_HIDE_SUPPORT_PROMPT="1")
    print("running:", " ".join(command), flush=True)
    hog = Hog(hog_on_s, cycle_s)
    log_path = workdir / "show.log"
    with open(log_path, "w") as log:
        show = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        watchdog = threading.Timer(seconds + 300, show.kill)     # a show that overruns by 5 min
        watchdog.start()
        loop_start, lines = None, []
        try:
            for line in show.stdout:        # "drawing at WxH ..." is printed as the loop starts
                if loop_start is None and line.startswith("drawing at"):
                    loop_start = time.monotonic() - hog.started
                lines.append(line.rstrip())
                print("  show:", line.rstrip(), flush=True)
            show.wait()
        finally:
            watchdog.cancel()
            if show.poll() is None:
                show.terminate()
                show.wait(timeout=30)
            hog.close()
    if show.returncode != 0 or not stats.is_file():
        sys.exit(f"size_under_load: the show exited {show.returncode} without its stats; its log:\n"
                 + log_path.read_text()[-4000:])
    return json.loads(stats.read_text()), hog, loop_start or 0.0, lines


def held(stats, seconds):
    """{size: seconds held} from the start size and the size changes (or step_downs)."""
    changes = stats.get("size_changes", stats.get("step_downs", []))
    size = changes[0][1] if changes else stats["gen_size"]
    spans, since = {}, 0.0
    for t_s, before, after in changes:
        spans[size] = spans.get(size, 0.0) + t_s - since
        size, since = after, t_s
    spans[size] = spans.get(size, 0.0) + max(0.0, seconds - since)
    return {name: round(s, 1) for name, s in spans.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the show (default 10)")
    parser.add_argument("--hog-on-s", type=float, default=60.0, help="seconds the hog runs in each cycle")
    parser.add_argument("--cycle-s", type=float, default=120.0, help="the hog's cycle (off first, then on)")
    parser.add_argument("--fps", type=float, help="the show's --fps (default: play's own)")
    parser.add_argument("--min-gen-size", help="the show's --min-gen-size (default: play's own)")
    args = parser.parse_args()
    if not 0 < args.hog_on_s < args.cycle_s or args.minutes <= 0:
        parser.error("expected --minutes > 0 and 0 < --hog-on-s < --cycle-s")
    seconds = args.minutes * 60.0

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        track = workdir / "set.flac"
        names = write_set(track, seconds + 60.0)
        print(f"set: {len(names)} tracks from {MUSIC} ({', '.join(dict.fromkeys(names))})", flush=True)
        stats, hog, loop_start, _ = run_show(track, seconds, args, workdir, args.hog_on_s, args.cycle_s)
    RESULT.write_text(json.dumps(report(stats, hog, loop_start, args, seconds), indent=1) + "\n")
    print(f"written: {RESULT}")


def report(stats, hog, loop_start, args, seconds):
    """Print the run's figures; returns them as the dict written to RESULT."""
    missing = [key for key in NEW_KEYS if key not in stats]
    result = {"command": " ".join(sys.argv), "minutes": args.minutes, "hog_on_s": args.hog_on_s,
              "cycle_s": args.cycle_s, "loop_start_s": round(loop_start, 2), "hog_switches": hog.switches,
              "frames": stats["frames"], "median_fps": stats["median_fps"], "final_size": stats["gen_size"],
              "sizes_held_s": held(stats, seconds), "missing_stats": missing,
              **{key: stats[key] for key in NEW_KEYS + ("step_downs", "errors") if key in stats}}
    print(f"\n{stats['frames']} frames in {args.minutes:g} min, median {stats['median_fps']:.1f} fps, "
          f"ended at {stats['gen_size']}; the hog ran {args.hog_on_s:g} s of every {args.cycle_s:g} s")
    print("sizes held: " + ", ".join(f"{size} {s:.0f} s" for size, s in result["sizes_held_s"].items()))
    if missing:
        print(f"not in the show's --stats (the live loop does not write them yet): {', '.join(missing)}")

    per_minute = stats.get("fps_per_minute")
    if per_minute is not None:
        end = loop_start + seconds      # the last minute may be a part of one
        hog_share = [hog.share_on(loop_start + 60 * i, min(end, loop_start + 60 * (i + 1)))
                     for i in range(len(per_minute))]
        result["hog_share_per_minute"] = [round(s, 2) for s in hog_share]
        print("minute  fps    hog")
        for i, (fps, share) in enumerate(zip(per_minute, hog_share)):
            print(f"{i + 1:>6}  {fps:5.1f}  {100 * share:3.0f} %")
        on = [fps for fps, share in zip(per_minute, hog_share) if share >= 0.5]
        off = [fps for fps, share in zip(per_minute, hog_share) if share < 0.5]
        if on and off:
            with_hog, without = statistics.median(on), statistics.median(off)
            result["median_fps_hog_on"], result["median_fps_hog_off"] = with_hog, without
            print(f"median of the minutes: {without:.1f} fps without the hog, {with_hog:.1f} with it "
                  f"({with_hog / without:.2f}x)")
    for key, text in (("min_fps_1s", "worst one-second frame rate"), ("p5_fps", "5th percentile frame rate")):
        if key in stats:
            print(f"{text}: {stats[key]:.1f} fps")
    sizes = stats.get("size_changes", stats.get("step_downs", []))
    rates = stats.get("fps_changes", [])
    result["changes"] = len(sizes) + len(rates)
    label = "size changes" if "size_changes" in stats else "step downs (no size_changes in the stats)"
    print(f"{label}: {len(sizes)}" + "".join(f"\n  {t:7.1f} s  {a} -> {b}" for t, a, b in sizes))
    print(f"frame rate changes: {len(rates)}"
          + "".join(f"\n  {t:7.1f} s  {a:g} -> {b:g} fps" for t, a, b in rates))
    print(f"changes in all: {result['changes']}")
    return result


if __name__ == "__main__":
    main()
