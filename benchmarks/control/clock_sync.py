"""How closely the show follows the DJ's clock, and how late a MIDI knob is (issue 14).

1. MIDI CC -> bus: a private JACK server (dummy driver, 256-frame periods), a virtual output
   port in this process sending a CC every --cc-every-ms to MidiInput; per CC, the time from
   the send to its ControlEvent on the bus (time.monotonic() both). JACK hands MIDI over once a
   period, so 0..5.8 ms is the transport itself; MidiPort polls rtmidi's queue every 1 ms.
2. MIDI clock: a sender process spins to send Start and then ticks exactly on a 124 BPM grid
   (24 a beat) to a JACK port; MidiClock (latency_s = 0) is read every 7 ms in this process.
   Phase error: its beat position against the sender's grid at the same perf_counter time, in
   ms (positive: ahead); the tempo it reports.
3. Ableton Link: inside a private network namespace (`unshare -n`, loopback only with a
   multicast route, so nothing leaves the machine; root needed) a peer process at 124 BPM is
   started first (tests/link_peer.py, printing its beat every 5 ms), then LinkClock in this
   benchmark's own process joins; its beat against the peer's (interpolated to the same
   perf_counter time, modulo the quantum) in ms, and the tempo it reports.

    cd /work/main
    .venv/bin/python benchmarks/control/clock_sync.py                  # 20 s each
    .venv/bin/python benchmarks/control/clock_sync.py --seconds 60 --json /tmp/clock.json

Targets: Link phase within 5 ms (median and p95) at 124.0 BPM; MIDI clock tempo within 0.1 BPM;
CC -> bus median within one JACK period (5.8 ms).
"""

import argparse
import bisect
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BESIDE = Path(__file__).resolve().with_suffix(".json")  # where --json alone writes its figures
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

BPM = 124.0
SENDER = r"""
import sys, time
import mido
bpm, seconds = float(sys.argv[1]), float(sys.argv[2])
out = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output("clock", virtual=True, client_name="dj")
print("ready", flush=True)
sys.stdin.readline()                       # the receiver has connected
period = 60.0 / bpm / 24
t0 = time.perf_counter() + 0.2
print(f"{t0:.9f}", flush=True)
out.send(mido.Message("start"))
k = 0
while k * period < seconds:
    due = t0 + k * period
    while (left := due - time.perf_counter()) > 0.001:
        time.sleep(left - 0.001)
    while time.perf_counter() < due:
        pass
    out.send(mido.Message("clock"))
    k += 1
out.send(mido.Message("stop"))
time.sleep(0.2)
"""


def quantiles(values):
    values = sorted(values)
    return {"median": statistics.median(values), "p95": values[int(0.95 * (len(values) - 1))],
            "max": values[-1], "n": len(values)}


def cc_to_bus(seconds, every_ms):
    import mido

    from flowvj.control import ControlBus
    from flowvj.control.midi import MidiInput
    from jack import virtual_output

    with tempfile.TemporaryDirectory() as folder:
        mapping = Path(folder) / "m.toml"
        mapping.write_text('[[map]]\ncc = 7\ncontrol = "speed"\n')
        out = virtual_output("knobs")
        bus = ControlBus()
        midi = MidiInput(bus, "knobs", mapping)
        time.sleep(0.3)
        sent, arrived, end, value = [], [], time.monotonic() + seconds, 0
        while time.monotonic() < end:
            value = (value + 1) % 128
            sent.append(time.monotonic())
            out.send(mido.Message("control_change", control=7, value=value))
            time.sleep(every_ms / 1000.0)
            arrived += bus.drain()
        time.sleep(0.1)
        arrived += bus.drain()
        midi.close()
        out.close()
    delays = [(event.time_s - t) * 1000.0 for t, event in zip(sent, arrived)]
    return {"sent": len(sent), "posted": len(arrived), "ms": quantiles(delays)}


def midi_clock(seconds, server):
    from flowvj.control.clock import MidiClock

    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(BPM), str(seconds)], env=server.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sender.stdout.readline().strip() == "ready"
    clock = MidiClock.open("dj:clock")
    time.sleep(0.3)
    sender.stdin.write("go\n")
    sender.stdin.flush()
    t0 = float(sender.stdout.readline())
    samples, end = [], t0 + seconds
    while time.perf_counter() < end:
        now = time.perf_counter()
        state = clock.state(now)
        if state is not None:
            samples.append((now, *state))
        time.sleep(0.007)
    sender.wait(30)
    clock.close()
    beat_s = 60.0 / BPM
    steady = [s for s in samples if s[0] > t0 + 2 * beat_s]   # the fit's window filled
    errors = [((position - (now - t0) / beat_s) * beat_s) * 1000.0 for now, _, position in steady]
    return {"samples": len(steady), "phase_ms": quantiles(errors), "abs_phase_ms": quantiles(map(abs, errors)),
            "tempo_bpm": quantiles([tempo for _, tempo, _ in steady])}


def link_in_namespace(seconds, quantum=4.0):
    """Runs inside `unshare -n`: the peer first, then LinkClock here; returns the figures."""
    subprocess.run("ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo",
                   shell=True, check=True)
    from flowvj.control.clock import LinkClock

    peer = subprocess.Popen([sys.executable, str(ROOT / "tests" / "link_peer.py"), str(BPM),
                             str(seconds + 6), str(quantum)], stdout=subprocess.PIPE, text=True)
    assert peer.stdout.readline().strip() == "ready"
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(peer.stdout), daemon=True)
    reader.start()
    time.sleep(1.0)                                   # the peer's session is the older one
    clock = LinkClock(quantum=quantum)
    joined = time.perf_counter()
    while clock.state(time.perf_counter()) is None and time.perf_counter() - joined < 10:
        time.sleep(0.01)
    joined_s = time.perf_counter() - joined
    samples, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        now = time.perf_counter()
        state = clock.state(now)
        if state is not None:
            samples.append((now, *state))
        time.sleep(0.005)
    clock.close()
    peer.wait(30)
    reader.join(5)
    peer_t, peer_beat = [], []
    for line in lines:
        t, beat, _, peers = line.split()
        if int(peers):
            peer_t.append(float(t))
            peer_beat.append(float(beat))
    errors, beat_s = [], 60.0 / BPM
    for now, tempo, position in samples:
        i = bisect.bisect(peer_t, now)
        if 0 < i < len(peer_t):
            a, b = i - 1, i
            theirs = peer_beat[a] + (peer_beat[b] - peer_beat[a]) * (now - peer_t[a]) / (peer_t[b] - peer_t[a])
            difference = (position - theirs + quantum / 2) % quantum - quantum / 2
            errors.append(difference * beat_s * 1000.0)
    return {"joined_s": joined_s, "samples": len(errors), "phase_ms": quantiles(errors),
            "abs_phase_ms": quantiles(map(abs, errors)), "tempo_bpm": quantiles([s[1] for s in samples])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--cc-every-ms", type=float, default=13.0)
    parser.add_argument("--json", nargs="?", const=str(BESIDE), metavar="PATH",
                        help="also write the figures to PATH (--json alone: clock_sync.json beside this script)")
    parser.add_argument("--link-in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.link_in_namespace:
        print(json.dumps(link_in_namespace(args.seconds)))
        return
    from jack import JackServer

    with tempfile.TemporaryDirectory() as folder:
        server = JackServer(Path(folder)).start().activate()
        try:
            print("MIDI CC -> bus ...", file=sys.stderr)
            figures = {"cc_to_bus": cc_to_bus(args.seconds, args.cc_every_ms)}
            print("MIDI clock ...", file=sys.stderr)
            figures["midi_clock"] = midi_clock(args.seconds, server)
        finally:
            server.deactivate()
            server.stop()
    print("Link (private network namespace) ...", file=sys.stderr)
    run = subprocess.run(["unshare", "-n", sys.executable, __file__, "--link-in-namespace", "--seconds",
                          str(args.seconds)], capture_output=True, text=True, timeout=args.seconds + 60)
    if run.returncode:
        figures["link"] = {"error": run.stderr.strip().splitlines()[-1:]}
    else:
        figures["link"] = json.loads(run.stdout.strip().splitlines()[-1])

    cc, mc, link = figures["cc_to_bus"], figures["midi_clock"], figures["link"]
    print(f"MIDI CC -> bus: {cc['posted']}/{cc['sent']} posted; median {cc['ms']['median']:.2f} ms, "
          f"p95 {cc['ms']['p95']:.2f} ms, max {cc['ms']['max']:.2f} ms")
    print(f"MIDI clock {BPM:g} BPM: tempo median {mc['tempo_bpm']['median']:.3f} BPM "
          f"(p95 {mc['tempo_bpm']['p95']:.3f}); phase error median {mc['phase_ms']['median']:+.2f} ms, "
          f"|error| median {mc['abs_phase_ms']['median']:.2f} ms, p95 {mc['abs_phase_ms']['p95']:.2f} ms")
    if "error" in link:
        print(f"Link: not measured: {link['error']}")
    else:
        print(f"Link {BPM:g} BPM: joined in {link['joined_s']:.2f} s; tempo median {link['tempo_bpm']['median']:.3f} "
              f"BPM; phase error median {link['phase_ms']['median']:+.3f} ms, |error| median "
              f"{link['abs_phase_ms']['median']:.3f} ms, p95 {link['abs_phase_ms']['p95']:.3f} ms "
              f"({link['samples']} samples)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
