"""A room of phones against the show's frame rate: `flowvj serve --audience` with 0 and then N
audience clients voting, alternated.

One real show (serve --silent --loop --audience, the demo track and images, drawn at --gen-size,
composed to --size, --fps) runs for the whole benchmark; a VJ client (an aiohttp WebSocket on
/ws, as the VJ's page, taking its frames and meters) samples the show's fps from the meters ~10
times a second. Phases alternate: no phones, then --phones aiohttp WebSocket clients on
/audience/ws, each from a loopback address of its own (127.1.x.y: one phone, one address, as on a
LAN), each casting a ballot (a random image and mood) every VOTE_INTERVAL_S or more, the wait
randomly jittered up to 3x (a tenth of them sooner than the interval, which the server must
refuse: so "refused" is about a tenth of the ballots), and each trying one VJ control (blackout, mode, brightness...)
on its audience socket. The phones run in a separate process (multiprocessing): on these two
cores their CPU is not the show's, but it is taken from the same cores, as phones' traffic would
not be; so the figure is, if anything, pessimistic. The first --settle-s of each phase are left
out of its figures (the show warming up, the phones connecting).

Printed: each phase's median fps and p95 frame interval (of the meters' samples), the show
process's CPU (% of a core) and the phones' own; the median fps with and without phones and
their ratio; ballots accepted and refused (too soon, too many); VJ-control attempts made and
accepted (a control accepted would change the controls the VJ page is sent: counted from its
state messages, and from the server's tally, must be 0). JSON beside this file.

    nice -n 5 .venv/bin/python benchmarks/outputs/audience_load.py [--phones 300] [--phase-s 60] [--rounds 2]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
FLOWVJ = Path(sys.executable).with_name("flowvj")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
CONTROL_TRIES = [("blackout", 1), ("mode", "magellan"), ("brightness", 0.0), ("next_image", None),
                 ("audience", 0), ("speed", 4.0), ("freeze", 1), ("image_set", "demo")]


def cpu_s(pid):
    """CPU seconds (user + system) of one process, from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


# -- the phones (a process of their own) ---------------------------------------------------------

async def one_phone(index, port, token, seconds, interval_s, counts):
    import aiohttp

    address = f"127.1.{index // 250}.{index % 250 + 1}"
    rng = random.Random(index)
    end = time.monotonic() + seconds
    await asyncio.sleep(rng.uniform(0, 3))                  # the room arrives over a few seconds
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/audience/ws", params={"token": token})
        except aiohttp.ClientError:
            counts["connect_failed"] += 1
            return
        welcome = json.loads((await ws.receive()).data)
        images, tried = welcome["choices"]["image"], False
        counts["connected"] += 1
        while time.monotonic() < end:
            early = rng.random() < 0.1                          # a tenth too soon: must be refused
            await asyncio.sleep(rng.uniform(0.3, interval_s - 0.5) if early else
                                rng.uniform(interval_s + 0.2, 3 * interval_s))
            if time.monotonic() >= end:
                break
            if not tried and rng.random() < 0.3:               # one VJ control on the audience socket
                name, value = rng.choice(CONTROL_TRIES)
                await ws.send_str(json.dumps({"control": name, "value": value}))
                reply, tried = json.loads((await ws.receive()).data), True
                counts["control_tries"] += 1
                counts["control_accepted"] += bool(reply.get("accepted"))
                continue
            choice = {"image": rng.choice(images), "mood": rng.choice(["calm", "intense"])}
            await ws.send_str(json.dumps(choice))
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                counts["closed"] += 1
                return
            counts["accepted" if json.loads(message.data)["accepted"] else "refused"] += 1
        await ws.close()


def phones(port, token, count, seconds, interval_s, out):
    """The phones' process: `count` clients for `seconds`; their counts and CPU into `out`."""
    import collections

    counts = collections.Counter()

    async def room():
        await asyncio.gather(*(one_phone(i, port, token, seconds, interval_s, counts) for i in range(count)))

    started = time.process_time()
    asyncio.run(room())
    out.update(dict(counts), cpu_s=time.process_time() - started)


# -- the VJ's side: the meters and the state, in this process ----------------------------------------

class Vj:
    """A VJ client on /ws: (time, fps, frame_ms) from every meters message, the controls changed
    in the state messages, the last tally."""

    def __init__(self):
        self.samples, self.changes, self.tally, self.controls = [], [], None, None

    async def listen(self, url, stop):
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url.replace("http://", "ws://") + "ws", max_msg_size=0) as ws:
                while not stop.is_set():
                    try:
                        message = await ws.receive(timeout=0.5)
                    except asyncio.TimeoutError:
                        continue
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(message.data)
                    if data["type"] == "meters":
                        meters = data["meters"]
                        self.samples.append((time.monotonic(), meters["fps"], meters["frame_ms"]))
                    elif data["type"] == "state":
                        if self.controls is not None:
                            self.changes += [name for name, value in data["controls"].items()
                                             if self.controls.get(name) != value]
                        self.controls = data["controls"]
                    elif data["type"] == "tally":
                        self.tally = data


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def bench(args, process, url, audience_url):
    vj, stop = Vj(), asyncio.Event()
    listener = asyncio.ensure_future(vj.listen(url, stop))
    port, token = re.search(r":(\d+)/audience#token=(\S+)", audience_url).groups()
    await asyncio.sleep(args.warmup_s)
    phases = []
    for round_index in range(args.rounds):
        for count in (0, args.phones):
            started, cpu_before = time.monotonic(), cpu_s(process.pid)
            out = multiprocessing.Manager().dict() if count else {}
            helper = None
            if count:
                from flowvj.outputs.web.audience import VOTE_INTERVAL_S

                helper = multiprocessing.Process(target=phones, args=(int(port), token, count, args.phase_s,
                                                                      VOTE_INTERVAL_S, out))
                helper.start()
            await asyncio.sleep(args.phase_s)
            if helper is not None:
                await asyncio.get_running_loop().run_in_executor(None, helper.join)
            ended = time.monotonic()
            cpu = cpu_s(process.pid) - cpu_before
            window = [(fps, ms) for t, fps, ms in vj.samples
                      if started + args.settle_s <= t <= started + args.phase_s]
            phase = {"round": round_index, "phones": count, "samples": len(window),
                     "median_fps": statistics.median(f for f, _ in window),
                     "p95_frame_ms": percentile([ms for _, ms in window], 0.95),
                     "show_cpu_pct": round(100 * cpu / (ended - started), 1), **dict(out)}
            if "cpu_s" in phase:
                phase["phones_cpu_pct"] = round(100 * phase.pop("cpu_s") / (ended - started), 1)
            phases.append(phase)
            print(f"round {round_index} phones {count:4d}: {phase['median_fps']:.2f} fps median, p95 frame "
                  f"{phase['p95_frame_ms']:.1f} ms, show CPU {phase['show_cpu_pct']:.0f} %"
                  + (f", phones CPU {phase['phones_cpu_pct']:.0f} %, ballots {phase.get('accepted', 0)} "
                     f"accepted / {phase.get('refused', 0)} refused, connected {phase.get('connected', 0)}"
                     if count else ""), flush=True)
    stop.set()
    await listener
    return phases, vj


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=300)
    parser.add_argument("--phase-s", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle-s", type=float, default=6.0)
    parser.add_argument("--warmup-s", type=float, default=8.0)
    parser.add_argument("--gen-size", default="192x108")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()

    command = [str(FLOWVJ), "serve", "--silent", "--loop", "--audience", "--port", "0", "--mode", "explore",
               "--fps", str(args.fps), "--gen-size", args.gen_size, "--size", args.size]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = audience_url = None
        for line in process.stdout:
            url = url or (re.search(r"open (http://\S+)", line) or [None, None])[1]
            audience_url = (re.search(r"phones open (\S+)", line) or [None, None])[1]
            if audience_url:
                break
        if not (url and audience_url):
            sys.exit(f"serve ended before printing its URLs: exit {process.wait()}")
        phases, vj = asyncio.run(bench(args, process, url, audience_url))
    finally:
        process.terminate()
        process.wait(30)

    def pooled(count):
        return statistics.median(p["median_fps"] for p in phases if p["phones"] == count)

    idle, loaded = pooled(0), pooled(args.phones)
    loaded_phases = [p for p in phases if p["phones"]]
    summary = {
        "command": " ".join(command[1:]), "phones": args.phones, "phase_s": args.phase_s,
        "rounds": args.rounds,
        "median_fps_without": idle, "median_fps_with": loaded, "ratio": loaded / idle,
        "ballots_accepted": sum(p.get("accepted", 0) for p in loaded_phases),
        "ballots_refused": sum(p.get("refused", 0) for p in loaded_phases),
        "control_tries": sum(p.get("control_tries", 0) for p in loaded_phases),
        "control_accepted": sum(p.get("control_accepted", 0) for p in loaded_phases),
        "vj_controls_changed": vj.changes, "server_tally": vj.tally, "phases": phases,
    }
    print(f"median fps: {idle:.2f} without phones, {loaded:.2f} with {args.phones} "
          f"(ratio {loaded / idle:.3f}); "
          f"ballots {summary['ballots_accepted']} accepted, {summary['ballots_refused']} refused; "
          f"VJ controls tried on the audience socket {summary['control_tries']}, accepted "
          f"{summary['control_accepted']}, controls the VJ page saw change: {len(vj.changes)}; server: "
          f"{(vj.tally or {}).get('control_attempts')} control attempts refused")
    HERE.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
