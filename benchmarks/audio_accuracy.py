"""How accurate and how cheap the causal analyzer is on real music, against the issue's targets.

For every LMMS track in ../shared/data/music (exact tempo and beat grid in `.beats`) and the
warzone2100 opus track (tempo in its name, no grid), the analyzer runs block by block (1024
samples at 44.1 kHz, as live) and the script prints, per track: declared and estimated BPM, the
error, beat F-measure (+-70 ms, each estimate matching at most one reference beat) over the
beats after the first 5 s and over the whole track, beat/reference/onset counts, and the time to
lock. aubio.tempo's F on the same audio (hop 512, its better setting) is printed for reference.
Then the 808 kick file (all 19 kicks, latency from the true onset to the end of the block that
reports it), the cost per block, and one PASS/FAIL line per target.

    .venv/bin/python benchmarks/audio_accuracy.py [--json figures.json]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from flowvj.audio.analyzer import Analyzer, _weighted_median
from flowvj.audio.sources import FileSource
from flowvj.audio.tempo import beat_f_measure

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRACKS = [  # (file, declared BPM, four-on-the-floor?)
    ("lmms_Shovon-ProgressiveHousePluckDemo_128bpm.ogg", 128, True),
    ("lmms_Jousboxx-BuzzerBeater_128bpm.ogg", 128, True),
    ("lmms_EsoXLB-CPU_128bpm.ogg", 128, True),
    ("lmms_TameAnderson-MakeMe_140bpm.ogg", 140, True),
    ("lmms_Saber-FinalStep_140bpm.ogg", 140, True),
    ("lmms_Alf42red-Mauiwowi_102bpm.ogg", 102, False),
    ("warzone2100_legacy_track14_ArtifactBeacon_130bpm.opus", 130, False),
]
KICK_FILE = DATA / "beats" / "beatnet_808kick120bpm.mp3"
KICKS = 0.505 + np.arange(19) * 0.4992
BLOCK, RATE = 1024, 44100
BLOCK_S = BLOCK / RATE
LOCK_IN_S = 5.0          # beats before this are left out of "F after 5 s"
TOLERANCE_S = 0.07


def run(samples):
    """Analyzer over the whole signal: (beat times, tempo at each beat, onset times, per-block
    tempo and confidence, per-block process seconds)."""
    analyzer = Analyzer(RATE)
    beats, beat_tempi, onsets, tempi, confidences, costs = [], [], [], [], [], []
    for start in range(0, len(samples) - BLOCK + 1, BLOCK):
        block = samples[start:start + BLOCK]
        t0 = time.perf_counter()
        f = analyzer.process(block)
        costs.append(time.perf_counter() - t0)
        if f.beat:
            beats.append(f.beat_time_s)
            beat_tempi.append(f.tempo_bpm)
        if f.onset:
            onsets.append(f.time_s)
        if f.tempo_bpm > 0:
            tempi.append(f.tempo_bpm)
            confidences.append(f.beat_confidence)
    return (np.array(beats), np.array(beat_tempi), np.array(onsets), tempi, confidences, costs)


def lock_time(beats, beat_tempi, declared, reference):
    """First emitted beat from which 4 beats in a row are within +-70 ms of a reference beat (or,
    with no reference, simply emitted) with the tempo within 2 % of the declared one; nan if never."""
    for i in range(len(beats) - 3):
        window, tempi = beats[i:i + 4], beat_tempi[i:i + 4]
        if np.any(np.abs(tempi / declared - 1) > 0.02):
            continue
        if reference is None or all(np.min(np.abs(reference - b)) <= TOLERANCE_S for b in window):
            return float(beats[i])
    return float("nan")


def aubio_f(samples, reference, hop=512):
    """aubio.tempo (causal, block-wise) on the same audio: F after LOCK_IN_S, for reference."""
    import aubio

    tracker, beats = aubio.tempo("default", 2 * hop, hop, RATE), []
    for start in range(0, len(samples) - hop + 1, hop):
        if tracker(samples[start:start + hop])[0]:
            beats.append(tracker.get_last_s())
    beats = np.array(beats)
    return beat_f_measure(beats[beats > LOCK_IN_S], reference[reference > LOCK_IN_S])


def track_figures(name, declared, steady):
    path = DATA / "music" / name
    beats_path = path.with_suffix(".beats")
    samples = FileSource(path, RATE).samples
    reference = np.loadtxt(beats_path, comments="#")[:, 0] if beats_path.is_file() else None
    beats, beat_tempi, onsets, tempi, confidences, costs = run(samples)
    estimated = _weighted_median(tempi, confidences)
    row = {"track": name, "declared_bpm": declared, "four_on_the_floor": steady,
           "estimated_bpm": round(estimated, 2), "error_pct": round(100 * (estimated / declared - 1), 2),
           "beats": len(beats), "onsets": len(onsets), "duration_s": round(len(samples) / RATE, 1),
           "lock_s": round(lock_time(beats, beat_tempi, declared, reference), 2), "costs": costs}
    if reference is not None:
        late, ref_late = beats[beats > LOCK_IN_S], reference[reference > LOCK_IN_S]
        row.update(reference_beats=len(reference), f_after_5s=round(beat_f_measure(late, ref_late), 3),
                   f_whole=round(beat_f_measure(beats, reference), 3),
                   aubio_f_after_5s=round(aubio_f(samples, reference), 3))
    return row


def kick_figures():
    samples = FileSource(KICK_FILE, RATE).samples
    analyzer, events = Analyzer(RATE), []
    for start in range(0, len(samples) - BLOCK + 1, BLOCK):
        if analyzer.process(samples[start:start + BLOCK]).kick_onset:
            events.append((start + BLOCK) / RATE)             # when a live show would see it
    events = np.array(events)
    latencies, used = [], set()
    for t in KICKS:
        hits = [i for i, e in enumerate(events) if t - 0.005 <= e <= t + 0.07 and i not in used]
        if hits:
            used.add(hits[0])
            latencies.append(events[hits[0]] - t)
    extra = [round(float(e), 3) for i, e in enumerate(events) if i not in used]
    return {"found": len(latencies), "of": len(KICKS), "events": len(events), "unmatched_events_s": extra,
            "latency_median_ms": round(1e3 * float(np.median(latencies)), 1),
            "latency_max_ms": round(1e3 * float(np.max(latencies)), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    for name, declared, steady in TRACKS:
        print(f"analysing {name} ...", file=sys.stderr, flush=True)
        rows.append(track_figures(name, declared, steady))
    kick = kick_figures()
    costs = np.concatenate([row.pop("costs") for row in rows]) * 1e3
    load_after = os.getloadavg()[0]
    cost = {"blocks": len(costs), "median_ms": round(float(np.median(costs)), 3),
            "p90_ms": round(float(np.percentile(costs, 90)), 3), "block_ms": round(1e3 * BLOCK_S, 1),
            "load_average_before_after": [round(load_before, 2), round(load_after, 2)], "cores": os.cpu_count()}

    print(f"Analyzer defaults, {BLOCK}-sample blocks at {RATE} Hz; beat F at +-{TOLERANCE_S * 1e3:.0f} ms; "
          f"'F>5s' leaves out the beats of the first {LOCK_IN_S:.0f} s (lock-in); lock = first of 4 beats in a row "
          f"on the grid with the tempo within 2 %.\n")
    print("| track | declared BPM | estimated BPM | error % | beat F >5s | beat F whole | aubio F >5s | beats / ref "
          "| onsets | lock s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['track']} | {r['declared_bpm']} | {r['estimated_bpm']:.2f} | {r['error_pct']:+.2f} | "
              f"{r.get('f_after_5s', '-')} | {r.get('f_whole', '-')} | {r.get('aubio_f_after_5s', '-')} | "
              f"{r['beats']} / {r.get('reference_beats', '-')} | {r['onsets']} | {r['lock_s']} |")
    print(f"\n808 kicks: {kick['found']}/{kick['of']} found, {kick['events']} kick events "
          f"(unmatched at {kick['unmatched_events_s']} s), latency median {kick['latency_median_ms']} ms, "
          f"max {kick['latency_max_ms']} ms (true onset -> end of the reporting block)")
    shared = load_before > 0.5 * cost["cores"] or load_after > 0.5 * cost["cores"]
    print(f"cost per block: median {cost['median_ms']} ms, p90 {cost['p90_ms']} ms over {cost['blocks']} blocks "
          f"(a block is {cost['block_ms']} ms of audio); load average {load_before:.2f} -> {load_after:.2f} on "
          f"{cost['cores']} cores" + (": another job shared the cores" if shared else ""))

    targets = {
        "tempo within 2 % on every track": all(abs(r["error_pct"]) <= 2 for r in rows),
        "beat F >= 0.9 (after 5 s) on the 128/140 BPM tracks": all(r["f_after_5s"] >= 0.9 for r in rows
                                                                  if r["four_on_the_floor"]),
        "all 19 808 kicks found, median latency <= one block (23.2 ms)":
            kick["found"] == 19 and kick["latency_median_ms"] <= 1e3 * BLOCK_S,
        "median cost per block < 1 ms": cost["median_ms"] < 1.0,
    }
    misses = [r["track"] for r in rows if r["four_on_the_floor"] and r["f_after_5s"] < 0.9]
    print()
    for target, ok in targets.items():
        detail = f" (below: {', '.join(misses)})" if "beat F" in target and misses else ""
        print(f"{'PASS' if ok else 'FAIL'}  {target}{detail}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tracks": rows, "kicks_808": kick, "cost": cost,
                                               "targets": targets}, indent=2))


if __name__ == "__main__":
    main()
