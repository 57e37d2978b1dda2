"""A soak (issue 25, 5): `flowvj serve --silent` for --minutes with a headless Chromium page attached,
a control every few seconds and a scene recall every minute. Does the show stay up, its memory flat
and its frame rate steady, as a set goes on?

What runs, all real: the `flowvj` console script (serve, --silent, the default --gen-size auto,
--fps 30, --port 0, --osc-port 0, --scenes, --image-sets, --stats, --duration just past the
soak); a headless Chromium (Debian's, through playwright) on its page at 1280x720; the controls
(mode, temperature, speed, sensitivity, next_image, blackout on/off, freeze on/off, brightness,
image_set) sent every --control-every seconds, each by turns through the page's own WebSocket
(when the page has that control) and by OSC over UDP; a scene
recall (four scenes: different image sets of ../shared/data/images, 12, 5, 3 and the 8 demo
images, different modes) every minute, half-way through it, alternating page and OSC.

The track: the LMMS beat tracks (several tempi, like a DJ's set) are decoded and joined into one
FLAC of about SET_MIN minutes, which serve repeats (`--loop`) for as long as the soak runs.
Decoded to float32 at 44.1 kHz it costs the show ~10.6 MB of memory a minute of track, held from
the start: a constant, so it does not move the drift, but a longer track would make the same
leak a smaller percentage; the drift is printed in MB too.

Measured: the serve process's RSS (/proc/PID/status VmRSS) every --rss-every seconds; its value
at --settle-minutes (5: start-up, model load and the first image-set encodes are over by then),
at the end, the largest drift from it after then (in % and MB) and a least-squares slope (MB per
hour); the frames the page received per minute (window.flowvjFrames) and serve's CPU (% of a
core, /proc/PID/stat); the show's own frame rate per minute when --stats has `fps_per_minute`;
the page's slowest seconds, with what was sent just before them (a recall or a set load, or the
machine?); the exit code; whether it exited before the soak was over; the page's reconnects;
the lines on serve's stderr, and those that look like an error
(traceback, error, exception, failed, terminate called), first few quoted. PASS/FAIL lines: RSS
within 5 % after the settle, exit 0 with no early exit, no error lines, and the per-minute frame
rate within 10 % of its median every minute (the machine is shared: a short run's figure is
noisy). Linux only (reads /proc).

    cd /work/main
    .venv/bin/python benchmarks/live/soak.py                                     # 60 minutes
    .venv/bin/python benchmarks/live/soak.py --minutes 3 --settle-minutes 1      # a check of the script

Progress goes to stderr, the report to stdout, every figure to --json (benchmarks/live/soak.json).
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from show_targets import CHROMIUM, CHROMIUM_ARGS, SIZE  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"
FLOWVJ = Path(sys.executable).with_name("flowvj")
ERROR_LINE = re.compile(r"traceback|error|exception|failed|terminate called", re.IGNORECASE)
# name -> the ../shared/data/images files in it (--image-sets DIR: a folder's name is its set's name)
IMAGE_SETS = {"nature": "mate_nature_*", "skimage": "skimage_*", "ukui": "ukui_*"}
SCENES = """# soak.py's scenes: different image sets (12, 5, 3 and the 8 demo images), different modes
[calm]
images = ["nature"]
mode = "magellan"
speed = 0.5
brightness = 0.9

[drop]
images = ["skimage"]
mode = "explore"
speed = 2.0
sensitivity = 1.5

[mix]
images = "demo"
mode = "weighted"
temperature = 0.3

[space]
images = ["ukui"]
mode = "explore"
interpolation = "linear"
speed = 1.0
"""
# the controls sent in turn, one every --control-every seconds (None: an action without a value)
CONTROLS = [("mode", "magellan"), ("temperature", 0.3), ("speed", 1.5), ("next_image", None),
            ("blackout", 1), ("blackout", 0), ("freeze", 1), ("freeze", 0), ("brightness", 0.7),
            ("mode", "weighted"), ("temperature", 1.2), ("image_set", "nature"), ("sensitivity", 1.3),
            ("speed", 0.8), ("brightness", 1.0), ("mode", "explore"), ("next_image", None),
            ("image_set", "demo"), ("sensitivity", 1.0), ("speed", 1.0)]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


SET_MIN = 10    # minutes of music, repeated by serve --loop


def long_track(path, seconds):
    """One FLAC of at least `seconds`: the LMMS beat tracks joined in name order, cycled. Each
    is decoded by flowvj itself (mono, 44.1 kHz) and written at once, so only one is in memory."""
    import soundfile

    from flowvj.audio.sources import FileSource

    tracks, total = sorted((SHARED / "music").glob("lmms_*bpm.ogg")), 0.0
    if not tracks:
        sys.exit(f"no lmms_*bpm.ogg tracks in {SHARED / 'music'}")
    with soundfile.SoundFile(path, "w", samplerate=44100, channels=1, format="FLAC",
                             subtype="PCM_16") as out:
        while total < seconds:
            for track in tracks:
                source = FileSource(track)
                assert source.rate == 44100
                out.write(np.clip(source.samples, -1.0, 1.0))
                total += source.duration_s
                if total >= seconds:
                    break
    return total


def image_folders(folder):
    """--image-sets folders: links to ../shared's images, one folder per entry of IMAGE_SETS."""
    paths = []
    for name, pattern in IMAGE_SETS.items():
        (folder / name).mkdir()
        for image in sorted((SHARED / "images").glob(pattern)):
            (folder / name / image.name).symlink_to(image)
        paths.append(folder / name)
    return paths


def rss_mb(pid):
    """The process's resident set (VmRSS) in MB, None when it has gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(match[1]) / 1024 if match else None


def cpu_s(pid):
    """The process's CPU time so far (user + system) in seconds, None when it has gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_lines(show, stdout_path, patterns, timeout_s):
    """The first match of each regex in serve's stdout (a file), waiting for them all ({} when
    serve exits first)."""
    found, deadline = {}, time.monotonic() + timeout_s
    while True:
        text = stdout_path.read_text()
        for key, pattern in patterns.items():
            match = re.search(pattern, text)
            if match:
                found[key] = match[1]
        if len(found) == len(patterns):
            return found
        if show.poll() is not None:
            log(f"serve exited ({show.returncode}) before printing {', '.join(set(patterns) - set(found))}")
            return {}
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve printed no {', '.join(set(patterns) - set(found))} in {timeout_s} s")
        time.sleep(0.2)


class Sender:
    """Sends a control through the page's own WebSocket or by OSC: each control by turns, through
    the page when the page has it."""

    def __init__(self, page, osc_port):
        from pythonosc.udp_client import SimpleUDPClient

        self.page, self.osc, self.turns = page, SimpleUDPClient("127.0.0.1", osc_port), {}

    def page_takes(self, name, value):
        """Whether the page has a control of that name (an element with its id) and, for an image
        set or a scene, offers that one."""
        if not self.page.evaluate("name => document.getElementById(name) !== null", name):
            return False
        if name in ("image_set", "scene"):
            return value in ((self.page.evaluate("window.flowvjState") or {}).get(f"{name}s") or [])
        return True

    def send(self, name, value):
        """Sends it; returns "page" or "osc"."""
        self.turns[name] = self.turns.get(name, 0) + 1
        if self.turns[name] % 2 and self.page_takes(name, value):
            self.page.evaluate("([name, value]) => window.flowvjSocket.send("
                               "JSON.stringify({control: name, value}))", [name, value])
            return "page"
        self.osc.send_message(f"/flowvj/{name}", [] if value is None else value)
        return "osc"


NEW_SOCKET = ("(() => { const s = window.flowvjSocket; if (!s || s.soakSeen) return 0; "
              "s.soakSeen = 1; return 1; })()")


def soak(args, folder):
    """Runs the show and the page for args.minutes; returns the raw record."""
    soak_s = args.minutes * 60.0
    log(f"joining tracks into one of at least {SET_MIN} min (looped) ...")
    track_s = long_track(folder / "set.flac", SET_MIN * 60.0)
    sets = image_folders(folder)
    scenes_path = folder / "scenes.toml"
    scenes_path.write_text(SCENES)
    stats_path, stdout_path, stderr_path = (folder / f for f in ("stats.json", "stdout.txt", "stderr.txt"))
    # the loop's clock starts just before the URL is printed, the soak's once the page draws: a
    # minute's margin for the page to open on a busy machine (the soak then waits for the end)
    command = [str(FLOWVJ), "serve", "--silent", "--loop", str(folder / "set.flac"),
               "--scenes", str(scenes_path),
               "--image-sets", *map(str, sets), "--stats", str(stats_path), "--duration", f"{soak_s + 60:g}",
               "--fps", f"{args.fps:g}", "--port", "0", "--osc-port", "0"]
    log(f"track {track_s / 60:.1f} min; starting: {' '.join(command)}")
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        show = subprocess.Popen(command, stdout=out, stderr=err)
    record = {"command": command, "track_min": track_s / 60, "rss": [], "page_frames": [], "page_seconds": [],
              "sent": [],
              "reconnects": 0, "soaked_s": 0.0}
    try:
        found = wait_for_lines(show, stdout_path, {"url": r"open (http://\S+) in a browser",
                                                   "osc": r"OSC: listening on [\d.]+:(\d+)"}, 600)
        if found:
            attach_and_drive(show, found, args, record)
        if show.poll() is None:
            log("soak over; waiting for serve's --duration to end it")
        record["exit_code"] = show.wait(timeout=180)
    finally:
        if show.poll() is None:
            show.send_signal(signal.SIGTERM)
            show.wait(60)
    record["early_exit"] = record["soaked_s"] < soak_s - 1.0
    record["stats"] = json.loads(stats_path.read_text()) if stats_path.exists() else None
    record["stdout_tail"] = stdout_path.read_text().splitlines()[-3:]
    record["stderr_lines"] = stderr_path.read_text().splitlines()
    return record


def attach_and_drive(show, found, args, record):
    """Opens the page, then until the soak is over (or serve has gone): samples RSS, counts the
    page's frames each minute, sends the controls and the scene recalls. Fills `record`."""
    from playwright.sync_api import Error, sync_playwright

    soak_s, scene_names = args.minutes * 60.0, re.findall(r"^\[(\w+)\]", SCENES, re.MULTILINE)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": SIZE[0], "height": SIZE[1]})
        try:
            page.goto(found["url"])
            page.wait_for_function("window.flowvjFrames > 0", timeout=60_000)
        except Error:
            if show.poll() is None:
                raise
            log(f"serve exited ({show.returncode}) before the page drew a frame")
            return
        page.evaluate(NEW_SOCKET)
        sender, t0 = Sender(page, int(found["osc"])), time.monotonic()
        log(f"page attached at {found['url']}; soaking for {args.minutes:g} min")
        next_control, next_scene, next_rss, next_minute = args.control_every, 30.0, 0.0, 0.0
        controls = scenes = 0
        while show.poll() is None:
            now = time.monotonic() - t0
            frames = page.evaluate("window.flowvjFrames")
            if not record["page_seconds"] or now >= record["page_seconds"][-1][0] + 1.0:
                record["page_seconds"].append((round(now, 2), frames))
            if now >= next_rss:
                record["rss"].append((round(now, 1), rss_mb(show.pid)))
                next_rss += args.rss_every
            if now >= next_minute or now >= soak_s:
                record["page_frames"].append((now, frames, cpu_s(show.pid)))
                record["reconnects"] += page.evaluate(NEW_SOCKET)
                if next_minute:
                    log(f"minute {next_minute / 60:.0f}: RSS {record['rss'][-1][1]:.0f} MB, page "
                        f"{per_minute(record['page_frames'])[-1]:.1f} fps, serve "
                        f"{100 * per_minute(record['page_frames'], 2)[-1]:.0f} % of a core")
                next_minute += 60.0
            if now >= soak_s:
                break
            if now >= next_scene:
                name = scene_names[scenes % len(scene_names)]
                record["sent"].append((round(now, 1), "scene", name, sender.send("scene", name)))
                scenes, next_scene = scenes + 1, next_scene + 60.0
            elif now >= next_control:
                name, value = CONTROLS[controls % len(CONTROLS)]
                record["sent"].append((round(now, 1), name, value, sender.send(name, value)))
                controls, next_control = controls + 1, next_control + args.control_every
            time.sleep(0.25)
        record["soaked_s"] = time.monotonic() - t0
        browser.close()


def per_minute(samples, column=1):
    """[(t_s, frames, cpu_s), ...] at minute boundaries -> that column's rate (a second) in each
    interval."""
    return [(b[column] - a[column]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:])
            if b[0] > a[0] and None not in (a[column], b[column])]


def stalls(seconds, sent, fps, count=5):
    """The page's slowest one-second windows (frames received, from [(t_s, frames)] about a second
    apart), each with what was sent in the 5 s before it, and how many seconds fell below half
    `fps`: whether the slow stretches follow scene recalls and image-set loads, or the machine."""
    rates = [((b[1] - a[1]) / (b[0] - a[0]), a[0]) for a, b in zip(seconds, seconds[1:]) if b[0] > a[0]]
    worst = sorted(rates)[:count]
    def before(t):
        return [f"{name} {value}" for sent_s, name, value, _ in sent if t - 5.0 <= sent_s <= t + 1.0]

    return {"seconds_below_half_fps": sum(1 for rate, _ in rates if rate < fps / 2),
            "slowest_seconds": [{"t_s": t, "page_fps": round(rate, 1), "sent_before": before(t)}
                                for rate, t in sorted(worst, key=lambda w: w[1])]}


def summarise(record, args):
    """The figures of a soak's raw record."""
    rss = [(t, mb) for t, mb in record["rss"] if mb is not None]
    after = [(t, mb) for t, mb in rss if t >= args.settle_minutes * 60.0]
    base = after[0][1] if after else None
    drift_mb = max((mb - base for _, mb in after), key=abs) if after else None
    slope = None
    if len(after) > 2:
        slope = float(np.polyfit([t for t, _ in after], [mb for _, mb in after], 1)[0] * 3600)
    page_fps = per_minute(record["page_frames"])
    cpu_pct = [100 * c for c in per_minute(record["page_frames"], 2)]
    stats = record["stats"] or {}
    show_fps = stats.get("fps_per_minute")
    # the show's minutes run from its own start (a few seconds before the page drew); those past
    # the soak's length are the margin before --duration, with no page and no controls
    judged = [f for f in (show_fps[:int(args.minutes)] if show_fps else page_fps) if f]
    median = statistics.median(judged) if judged else 0.0
    errors = [line for line in record["stderr_lines"] if ERROR_LINE.search(line)]
    sent = record["sent"]
    return {
        "minutes": args.minutes, "settle_minutes": args.settle_minutes, "fps_target": args.fps,
        "exit_code": record["exit_code"], "early_exit": record["early_exit"],
        "soaked_min": record["soaked_s"] / 60,
        "rss_start_mb": rss[0][1] if rss else None, "rss_peak_mb": max(mb for _, mb in rss) if rss else None,
        "rss_settle_mb": base, "rss_end_mb": after[-1][1] if after else None,
        "rss_max_drift_mb": drift_mb, "rss_max_drift_pct": 100 * drift_mb / base if after else None,
        "rss_slope_mb_per_h": slope,
        "page_fps_per_minute": [round(f, 2) for f in page_fps], "show_fps_per_minute": show_fps,
        "serve_cpu_pct_per_minute": [round(c, 1) for c in cpu_pct],
        **stalls(record["page_seconds"], sent, args.fps),
        "fps_spread_pct": max(abs(f / median - 1) for f in judged) * 100 if median else None,
        "page_reconnects": record["reconnects"],
        "controls_sent": sum(1 for s in sent if s[1] != "scene"),
        "scenes_recalled": sum(1 for s in sent if s[1] == "scene"),
        "sent_by_page": sum(1 for s in sent if s[3] == "page"),
        "stderr_lines": len(record["stderr_lines"]), "error_lines": len(errors),
        "first_error_lines": errors[:10],
        "stats": stats, "rss_samples": record["rss"], "sent": sent, "command": record["command"],
        "track_min": record["track_min"], "stdout_tail": record["stdout_tail"],
    }


def figure(value, unit="", digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def verdict(ok, what):
    print(f"{'PASS' if ok else 'FAIL'}: {what}")


def report(s):
    """The summary as the lines and table the issue quotes."""
    settle = f"{s['settle_minutes']:g} min"
    print(f"soak: flowvj serve --silent for {s['soaked_min']:.1f} of {s['minutes']:g} min at --fps "
          f"{s['fps_target']:g}; {s['controls_sent']} controls and {s['scenes_recalled']} scene recalls "
          f"({s['sent_by_page']} through the page, the rest by OSC)")
    shown = ("frames", "median_fps", "p95_frame_ms", "gen_size", "step_downs", "size_changes", "errors",
             "bad_frames")
    print(f"exit code {s['exit_code']}{' (EARLY)' if s['early_exit'] else ''}; stats: "
          + ", ".join(f"{k} {s['stats'][k]}" for k in shown if k in s["stats"]))
    print(f"RSS: start {figure(s['rss_start_mb'], ' MB', 0)}, peak {figure(s['rss_peak_mb'], ' MB', 0)}, "
          f"at {settle} {figure(s['rss_settle_mb'], ' MB', 0)}, end {figure(s['rss_end_mb'], ' MB', 0)}; "
          f"largest drift after {settle} {figure(s['rss_max_drift_pct'], ' %', 2)} "
          f"({figure(s['rss_max_drift_mb'], ' MB')}), slope {figure(s['rss_slope_mb_per_h'], ' MB/h')}")
    page, show, cpu = s["page_fps_per_minute"], s["show_fps_per_minute"] or [], s["serve_cpu_pct_per_minute"]
    print("| minute | page fps | show fps | serve CPU (% of a core) |")
    print("|---|---|---|---|")
    def at(values, i):
        return values[i] if i < len(values) else None

    for i in range(max(len(page), len(show))):
        minute = f"{i + 1}{' (after the soak)' if i >= s['minutes'] else ''}"
        print(f"| {minute} | {figure(at(page, i))} | {figure(at(show, i))} | {figure(at(cpu, i), '', 0)} |")
    which = "the show's fps_per_minute" if show else "the page's fps: --stats has no fps_per_minute"
    print(f"frame rate: the furthest minute is {figure(s['fps_spread_pct'], ' %')} off the median ({which}); "
          f"page reconnects {s['page_reconnects']}")
    print(f"page: {s['seconds_below_half_fps']} one-second windows under half of --fps; the slowest:")
    for second in s["slowest_seconds"]:
        print(f"    at {second['t_s']:.0f} s: {second['page_fps']} fps; sent in the 5 s before: "
              f"{', '.join(second['sent_before']) or 'nothing'}")
    print(f"stderr: {s['stderr_lines']} lines, {s['error_lines']} look like errors")
    for line in s["first_error_lines"]:
        print(f"    {line[:200]}")
    drift, spread = s["rss_max_drift_pct"], s["fps_spread_pct"]
    verdict(drift is not None and abs(drift) <= 5.0, f"RSS within 5 % after {settle}")
    verdict(s["exit_code"] == 0 and not s["early_exit"], "ran to the end, exit 0")
    verdict(s["error_lines"] == 0, "no error lines on stderr")
    verdict(spread is not None and spread <= 10.0, "every minute's frame rate within 10 % of the median")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the soak runs (default: 60)")
    parser.add_argument("--settle-minutes", type=float, default=5.0,
                        help="RSS drift is measured from this minute on (default: 5)")
    parser.add_argument("--control-every", type=float, default=4.0,
                        help="seconds between controls (default: 4)")
    parser.add_argument("--rss-every", type=float, default=10.0,
                        help="seconds between RSS samples (default: 10)")
    parser.add_argument("--fps", type=float, default=30.0, help="serve's --fps (default: 30)")
    parser.add_argument("--json", default=str(HERE / "soak.json"),
                        help="where the figures go (default: benchmarks/live/soak.json)")
    parser.add_argument("--keep", help="keep the track, scenes, stats and serve's output in this new folder")
    args = parser.parse_args()
    if not 0 <= args.settle_minutes < args.minutes:
        parser.error("--settle-minutes must be below --minutes")
    if args.keep:
        folder = Path(args.keep)
        folder.mkdir(parents=True)
        record = soak(args, folder)
    else:
        with tempfile.TemporaryDirectory(prefix="flowvj-soak-") as tmp:
            record = soak(args, Path(tmp))
    summary = summarise(record, args)
    Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    report(summary)
    log(f"figures in {args.json}")


if __name__ == "__main__":
    main()
