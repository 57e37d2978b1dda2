"""How late OSC is, both ways, in a real live show (issue 14).

A LiveLoop plays a synthesised 128 BPM track by the clock (no sound device) with the bundled
model and demo images, listening with OscInput on a loopback port and sending telemetry with
OscTelemetry to a python-osc server in this process.

1. controls in: a client thread sends /flowvj/speed every --send-every-ms (not a multiple of
   the frame period, so the sends fall all over the frame). Per message: send -> posted on the
   bus (the OSC thread's work) and send -> drained by the frame loop (what the show sees). The
   loop drains once a frame after the outputs, so the drain wait is up to one frame period: the
   target is the median within one frame at --fps (16.7 ms at 60), and the p95 too when the
   machine keeps up with --fps.
2. telemetry out: for each frame whose meters carry a beat, the time the outputs were called
   (a recorder output just before OscTelemetry) -> the matching /flowvj/beat index arriving at
   the server; and the received beats' median interval against the track's 468.75 ms.

    cd /work/main
    .venv/bin/python benchmarks/control/osc_latency.py                   # 20 s at 60 fps, 64x36
    .venv/bin/python benchmarks/control/osc_latency.py --fps 30 --gen-size 128x72 --seconds 30 \
        --json /tmp/osc.json

All times are time.monotonic() in this one process. Progress goes to stderr; the table to stdout.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch is imported

from pythonosc.dispatcher import Dispatcher  # noqa: E402
from pythonosc.osc_server import BlockingOSCUDPServer  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402

from flowvj.audio.synth import synth_track, write_track  # noqa: E402
from flowvj.control import ControlBus  # noqa: E402
from flowvj.control.osc import OscInput, OscTelemetry  # noqa: E402
from flowvj.show.live.loop import LiveLoop
from flowvj.show.live.session import open_live

BESIDE = Path(__file__).resolve().with_suffix(".json")  # where --json alone writes its figures
BPM = 128.0


class TimingBus(ControlBus):
    """A ControlBus that notes when the frame loop drains each event (monotonic s)."""

    def __init__(self):
        super().__init__()
        self.drained = []   # (event, drain time)

    def drain(self):
        events, now = super().drain(), time.monotonic()
        self.drained += [(event, now) for event in events]
        return events


class FrameTimes:
    """An output that notes when each frame with a beat is shown (just before the telemetry)."""

    def __init__(self):
        self.beat_frames = []

    def show(self, frame, meters):
        if meters["beat"]:
            self.beat_frames.append(time.monotonic())

    def close(self):
        pass


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the live run")
    parser.add_argument("--fps", type=float, default=60.0, help="the frame rate the loop aims for")
    parser.add_argument("--gen-size", default="64x36", help="WIDTHxHEIGHT the flow draws at")
    parser.add_argument("--send-every-ms", type=float, default=97.0, help="gap between control messages")
    parser.add_argument("--json", nargs="?", const=str(BESIDE), metavar="PATH",
                        help="also write the figures to PATH (--json alone: osc_latency.json beside this script)")
    args = parser.parse_args()
    gen_size = tuple(int(side) for side in args.gen_size.lower().split("x"))

    arrivals = {}   # beat index -> arrival time
    dispatcher = Dispatcher()

    def beat(address, index):   # returns None: python-osc would send a handler's result back as a reply
        arrivals.setdefault(index, time.monotonic())

    dispatcher.map("/flowvj/beat", beat)
    receiver = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=receiver.serve_forever, args=(0.05,), daemon=True).start()

    tmp = tempfile.TemporaryDirectory()
    track = Path(tmp.name) / "track.wav"
    write_track(track, synth_track(bpm=BPM, duration_s=args.seconds + 10, seed=0))
    print(f"loading the show ({args.gen_size}) ...", file=sys.stderr)
    source, show, _ = open_live(track=track, silent=True, gen_size=gen_size, fps=args.fps, mode="explore")

    bus, frames = TimingBus(), FrameTimes()
    telemetry = OscTelemetry("127.0.0.1", receiver.server_address[1])
    osc = OscInput(bus, port=0)
    sent, stop = [], threading.Event()

    def send_controls():
        client = SimpleUDPClient("127.0.0.1", osc.port)
        time.sleep(1.0)     # past the first frames
        i = 0
        while not stop.wait(args.send_every_ms / 1000.0):
            value = 1.0 + (i % 32) / 64       # speeds 1.0 .. 1.48, exact in float32
            sent.append(time.monotonic())
            client.send_message("/flowvj/speed", value)
            i += 1

    sender = threading.Thread(target=send_controls, daemon=True)
    sender.start()
    print(f"live for {args.seconds:g} s at {args.fps:g} fps ...", file=sys.stderr)
    loop = LiveLoop(show, source, [frames, telemetry], fps=args.fps, bus=bus)
    with source:
        stats = loop.run(args.seconds - 0.5)
    stop.set()
    sender.join()
    time.sleep(0.2)
    osc.close()
    telemetry.close()
    receiver.shutdown()
    tmp.cleanup()

    drained = [(event, at) for event, at in bus.drained if event.source == "osc"]
    n = min(len(sent), len(drained))                # the bus keeps their order
    to_post = [(drained[i][0].time_s - sent[i]) * 1000 for i in range(n)]
    to_drain = [(drained[i][1] - sent[i]) * 1000 for i in range(n)]
    beat_ms = [(arrivals[k + 1] - t) * 1000 for k, t in enumerate(frames.beat_frames) if k + 1 in arrivals]
    beat_times = [arrivals[k] for k in sorted(arrivals)]
    intervals = [(b - a) * 1000 for a, b in zip(beat_times, beat_times[1:])]
    frame_ms = 1000.0 / args.fps
    figures = {
        "fps_target": args.fps, "median_fps": stats["median_fps"], "p95_frame_ms": stats["p95_frame_ms"],
        "gen_size": stats["gen_size"], "controls_sent": len(sent), "controls_drained": len(drained),
        "send_to_post_ms": {"median": statistics.median(to_post), "p95": percentile(to_post, 0.95)},
        "send_to_drain_ms": {"median": statistics.median(to_drain), "p95": percentile(to_drain, 0.95),
                             "max": max(to_drain)},
        "within_one_frame": sum(ms <= frame_ms for ms in to_drain) / n,
        "beats_framed": len(frames.beat_frames), "beats_received": len(arrivals),
        "beat_frame_to_arrival_ms": {"median": statistics.median(beat_ms), "p95": percentile(beat_ms, 0.95)},
        "beat_interval_ms": {"median": statistics.median(intervals) if intervals else float("nan"),
                             "expected": 60000.0 / BPM},
        "telemetry_errors": telemetry.errors, "osc_bad": osc.bad,
    }
    print(f"live: median {stats['median_fps']:.1f} fps (target {args.fps:g}), p95 frame "
          f"{stats['p95_frame_ms']:.1f} ms, drawn at {stats['gen_size']}")
    print(f"controls in ({n} of {len(sent)} sent matched):")
    print(f"  send -> posted on the bus    median {figures['send_to_post_ms']['median']:6.2f} ms, "
          f"p95 {figures['send_to_post_ms']['p95']:6.2f} ms")
    print(f"  send -> drained by the loop  median {figures['send_to_drain_ms']['median']:6.2f} ms, "
          f"p95 {figures['send_to_drain_ms']['p95']:6.2f} ms, max {figures['send_to_drain_ms']['max']:.2f} ms")
    achieved_ms = 1000.0 / stats["median_fps"]
    print(f"  within one frame at {args.fps:g} fps ({frame_ms:.1f} ms): {100 * figures['within_one_frame']:.0f} %; "
          f"median {'PASS' if figures['send_to_drain_ms']['median'] <= frame_ms else 'FAIL'}")
    print(f"  within one frame as run ({achieved_ms:.1f} ms): "
          f"{100 * sum(ms <= achieved_ms for ms in to_drain) / n:.0f} % (a drain waits for the frame's end)")
    print(f"telemetry out ({len(arrivals)} of {len(frames.beat_frames)} beats received, "
          f"{telemetry.errors} send errors):")
    print(f"  beat frame shown -> /flowvj/beat arrives  median {figures['beat_frame_to_arrival_ms']['median']:.3f} ms, "
          f"p95 {figures['beat_frame_to_arrival_ms']['p95']:.3f} ms")
    print(f"  received beat interval median {figures['beat_interval_ms']['median']:.1f} ms "
          f"(the track's {60000.0 / BPM:.2f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
