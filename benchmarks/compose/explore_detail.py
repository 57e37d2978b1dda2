"""`explore` on music at 192x108, rendered at 1280x720 with the compositor off and on: does the
picture carry detail above the generation size, does the motion still follow the music, and what
does the compositor cost the render?

For each track (an excerpt) it runs `flowvj render --mode explore --gen-size 192x108` on the 20
shared photos twice, `--detail off` and `--detail transfer`, and prints per video:
  rt dB        the median frame's PSNR against its own round trip through 192x108 (INTER_AREA
               down, bilinear up): lower = more detail above the generation size (target <= 37)
  <= 37 dB     the share of frames at or under 37 dB
  sync         `flowvj sync`'s figures (xcorr_peak and lag of the motion against the onsets), the
               motion measure the navigator was tuned with (its video motion is at 64 px wide)
  envelope     an independent measure of the same videos: the correlation of the frames' mean
               absolute difference at 32x18 (low frequencies only, so detail cannot inflate it) with
               the track's onset envelope computed here (spectral flux of
               a 2048-point STFT), best lag within +-3 frames
  fps          frames rendered per second of wall time (the render's speed)

Usage: .venv/bin/python benchmarks/compose/explore_detail.py [--seconds 20] [--tracks N] [--json [PATH]]
"""

import argparse
import glob
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
FLOWVJ = ROOT / ".venv" / "bin" / "flowvj"
GEN = (192, 108)
TRACKS = ("lmms_EsoXLB-CPU_128bpm", "lmms_Impulslogik-Zen_140bpm", "xmoto_batcave", "hedgewars_Nature_ambient")


def frames_of(video):
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def round_trip_db(frame):
    small = cv2.resize(frame, GEN, interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
    mse = np.mean((frame.astype(np.float32) - back.astype(np.float32)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def onset_envelope(track, start_s, seconds, fps):
    """Spectral flux (half-wave rectified log-magnitude rise) per video frame."""
    import soundfile
    from scipy.signal import stft

    audio, rate = soundfile.read(str(track), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)[int(start_s * rate):int((start_s + seconds) * rate)]
    _, times, spec = stft(audio, rate, nperseg=2048, noverlap=2048 - 512)
    mag = np.log1p(100 * np.abs(spec))
    flux = np.maximum(0, np.diff(mag, axis=1)).sum(axis=0)
    frame_times = np.arange(int(seconds * fps)) / fps
    return np.interp(frame_times, times[1:], flux)


def envelope_correlation(video, envelope):
    small = [cv2.resize(f, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32) for f in frames_of(video)]
    motion = np.array([np.abs(b - a).mean() for a, b in zip(small, small[1:])])
    n = min(len(motion), len(envelope) - 1)
    motion, env = motion[:n], envelope[1:n + 1]
    best = -1.0
    for lag in range(-3, 4):
        m, e = (motion[lag:], env[:n - lag]) if lag >= 0 else (motion[:n + lag], env[-lag:])
        best = max(best, float(np.corrcoef(m, e)[0, 1]))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--start", type=float, default=30.0)
    parser.add_argument("--tracks", type=int, default=3)
    parser.add_argument("--json", nargs="?", const=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    tracks = []
    for name in TRACKS:
        found = sorted(glob.glob(str(SHARED / "music" / f"{name}*.ogg")))
        if found:
            tracks.append(Path(found[0]))
    tracks = tracks[:args.tracks]
    images = str(SHARED / "images")
    results = []
    print(f"{'track':42s} {'detail':8s} {'rt dB':>6s} {'<=37':>5s} {'xcorr':>6s} {'lagms':>5s} {'envelope':>8s} {'fps':>5s}")
    with tempfile.TemporaryDirectory() as tmp:
        for track in tracks:
            envelope = onset_envelope(track, args.start, args.seconds, 30)
            for detail in ("off", "transfer"):
                video = Path(tmp) / f"{track.stem}-{detail}.mp4"
                started = time.perf_counter()
                subprocess.run([str(FLOWVJ), "render", str(track), "-o", str(video), "--mode", "explore",
                                "--images", images, "--gen-size", "%dx%d" % GEN, "--detail", detail,
                                "--start", str(args.start), "--duration", str(args.seconds), "--fps", "30"],
                               check=True, capture_output=True)
                wall = time.perf_counter() - started
                dbs = np.array([round_trip_db(frame) for frame in frames_of(video)])
                sync = json.loads(subprocess.run([str(FLOWVJ), "sync", str(video), "--json"], check=True,
                                                 capture_output=True, text=True).stdout)
                row = {"track": track.name, "detail": detail, "rt_db_median": float(np.median(dbs)),
                       "share_le_37": float(np.mean(dbs <= 37.0)), "frames": int(len(dbs)),
                       "sync": sync, "envelope_corr": envelope_correlation(video, envelope),
                       "render_fps": len(dbs) / wall}
                results.append(row)
                print(f"{track.name[:42]:42s} {detail:8s} {row['rt_db_median']:6.1f} {row['share_le_37']:5.2f} "
                      f"{sync.get('xcorr_peak', float('nan')):6.3f} {sync.get('xcorr_lag_ms', 0):4.0f} "
                      f"{row['envelope_corr']:8.3f} {row['render_fps']:5.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": args.seconds, "start": args.start, "results": results},
                                              indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
