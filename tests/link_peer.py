"""A stand-in for the DJ's Link app: `python link_peer.py BPM SECONDS [QUANTUM]`.

It joins (or starts) a Link session at BPM, prints `ready` once enabled, then for SECONDS prints
one line every 5 ms: `perf_counter_s beat tempo peers` (the beat at the quantum, read between
two perf_counter calls and stamped with their midpoint), so another process on the same machine
can compare its own beat with this one's on the same clock. Run it inside a private network
namespace (`unshare -n`, see test_link.py): Link talks multicast on every interface.
"""

import asyncio
import sys
import time

from aalink import Link


async def main(bpm, seconds, quantum):
    link = Link(bpm)
    link.quantum = quantum
    link.enabled = True
    print("ready", flush=True)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        before = time.perf_counter()
        beat, tempo = link.beat, link.tempo
        print(f"{(before + time.perf_counter()) / 2:.6f} {beat:.6f} {tempo:.4f} {link.num_peers}", flush=True)
        await asyncio.sleep(0.005)
    link.enabled = False


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 4.0))
