"""Where each shared LMMS track's energy rises: on its beats or half a beat off them, per band.

The evidence behind two of the beat tracker's open failures (tempo.py, "The failures left"):

1. per track, over 30-60 s (after 5 s for tracks under 60 s): for each of nine bands, the mean
   linear spectral flux (1024-sample Hann frames, hop 512) within +-6 % of a beat of a reference
   beat, divided by the same half a beat later. Above 1 the band marks the beat, below 1 the
   offbeat. A band that marked the beat on every track could anchor the phase of a start over
   (the late re-locks into Impulslogik and Socceroos took the offbeat); the table says whether
   there is one;
2. per 4 s of one track (--track, default DirtyLove): the flux at its even reference beats over
   that at its odd ones (+-35 ms), in the whole spectrum. A tracker at half the tempo sits on one
   of the two; where the ratio turns over, the accented half moves.

    .venv/bin/python benchmarks/audio/accent_profile.py [--track DirtyLove]
"""

import argparse

import numpy as np

from beat_cv import FOLDS, MUSIC, RATE, TRACKS, load_reference
from flowvj.audio.sources import FileSource

EDGES_HZ = [30, 80, 150, 300, 600, 1200, 2500, 5000, 10000, 16000]
FRAME, HOP = 1024, 512


def band_flux(samples):
    """(times s, (n, bands) linear flux): the positive rise of each band's magnitude sum."""
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME)[::HOP]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1))
    freqs = np.fft.rfftfreq(FRAME, 1 / RATE)
    bands = np.stack([spectrum[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                      for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:])], axis=1)
    times = (np.arange(1, len(bands)) * HOP + FRAME / 2) / RATE
    return times, np.maximum(np.diff(bands, axis=0), 0.0)


def beat_offbeat_ratios(times, flux, reference):
    start, end = (30.0, 60.0) if times[-1] > 60 else (5.0, times[-1])
    inside = (times > start) & (times < end)
    phase = np.interp(times[inside], reference, np.arange(len(reference))) % 1.0
    on, off = (phase < 0.06) | (phase > 0.94), np.abs(phase - 0.5) < 0.06
    return flux[inside][on].mean(axis=0) / np.maximum(flux[inside][off].mean(axis=0), 1e-12)


def even_odd(times, flux, reference, step_s=4.0):
    total = flux.sum(axis=1)
    rows = []
    for start in np.arange(0.0, reference[-1] - step_s, step_s):
        peaks = {0: [], 1: []}
        for i in np.flatnonzero((reference >= start) & (reference < start + step_s)):
            near = np.abs(times - reference[i]) <= 0.035
            if near.any():
                peaks[i % 2].append(total[near].max())
        if peaks[0] and peaks[1]:
            rows.append((start, np.mean(peaks[0]) / max(np.mean(peaks[1]), 1e-12)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--track", default="DirtyLove", help="part of a track's name for the even/odd table")
    args = parser.parse_args()
    bands = [f"{lo}-{hi}" for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:])]
    print("beat / offbeat flux per band (Hz), 30-60 s\n")
    print("| track | fold | " + " | ".join(bands) + " |")
    print("|---|---|" + "---|" * len(bands))
    chosen = next(s for s in TRACKS if args.track.lower() in s.lower())
    below, chosen_flux = np.zeros(len(bands), int), None
    for stem in TRACKS:
        times, flux = band_flux(FileSource(MUSIC / f"{stem}.ogg", RATE).samples)
        if stem == chosen:
            chosen_flux = times, flux
        ratios = beat_offbeat_ratios(times, flux, load_reference(stem))
        below += ratios < 1.0
        print(f"| {stem} | {FOLDS[stem]} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    print(f"| tracks below 1 (of {len(TRACKS)}) | | " + " | ".join(str(n) for n in below) + " |")

    print(f"\n{chosen}: flux at even / odd reference beats, per 4 s")
    print(" ".join(f"{start:.0f}s:{ratio:.2f}" for start, ratio in even_odd(*chosen_flux, load_reference(chosen))))


if __name__ == "__main__":
    main()
