"""Choose the travelling modes' motion drive by cross-validation on the shared LMMS beat tracks.

The drive (navigate.motion_drive) is how hard magellan and explore move each frame. Candidates in
`CANDIDATES` are functions of one frame's analyzer Features; each runs on every beat track in
both travelling modes, and the one with the best median xcorr_peak over the tuning fold's
track x mode pairs (ties: the best minimum) is the choice. The fold split is beat_cv.FOLDS (in name
order, the 1st, 3rd, ... track tuned on, the others held out), fixed before any figure was seen;
the figures that count are the held-out fold's.

Excerpts (a rule, not a choice per track): 30 s from t = 30 s when a track lasts at least 60 s,
else its last 30 s (the whole track when shorter). Like `flowvj render --start`, the analyzer
starts fresh at the excerpt's start, one block per video frame at 30 fps, bounded as render
bounds them (engine.frame_bounds).

Proxy (the search): the bundled demo images and model at 32x18, the latents decoded in memory,
motion = mean absolute grey difference of consecutive frames, and metrics.cross_correlation
against metrics.onset_envelope of the excerpt, as `flowvj sync` does (lags +-9 frames,
xcorr_lag_ms positive when the picture is late). Quiet vs loud: metrics.frame_rms per frame,
the mean motion of the quietest 20 % of frames against the loudest 20 %, on the two ambient
tracks (whole) and the beat tracks' own excerpts.

With --cli, the chosen drive (the code's defaults) is confirmed through the real commands on the
held-out tracks: `flowvj render TRACK --start S --duration 30 --mode M --size 320x180 -o x.mp4` (drawn at the
default generation size (engine.render_gen_size; 64x36 with lite when this ran); 1280x720 took ~5 min a render on the busy VM),
then `flowvj sync --json x.mp4`.

Analyzer features per excerpt are cached under $TMPDIR/flowvj-motion-cv (keyed by the
analyzer's and tracker's source, so a changed beat tracker is re-run).

    .venv/bin/python benchmarks/motion/motion_cv.py [--finalists 3] [--cli] [--cli-folds held-out|all]
    .venv/bin/python benchmarks/motion/motion_cv.py --ceilings
    .venv/bin/python benchmarks/motion/motion_cv.py --cli-only [--cli-folds held-out|all]
"""

import argparse
import hashlib
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flowvj.show import navigate
from flowvj.audio import analyzer as analyzer_module, tempo as tempo_module
from flowvj.audio.analyzer import Analyzer, attack_release, smoothing_coefficient
from flowvj.audio.sources import FileSource
from flowvj.images import load_show_images
from flowvj.show.pipeline import frame_bounds
from flowvj.lab.metrics import _per_frame, cross_correlation, frame_rms, onset_envelope, spectral_flux

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audio"))  # beat_cv's folds and tracks
from beat_cv import FOLDS, MUSIC, TRACKS  # noqa: E402

FPS = 30
PROXY_SIZE = (32, 18)
EXCERPT_S = 30.0
MAX_LAG = round(0.3 * FPS)
MODES = ("magellan", "explore")
# the CLI check's output size: drawn at the default generation size (engine.render_gen_size) and
# upscaled to 320x180, as benchmarks/live/resolution_targets.py part 4 does (sync reads 64 px wide)
CLI_SIZE = "320x180"
CALM = ("warzone2100_menu_ambient.opus", "hedgewars_Nature_ambient.ogg")
CACHE = Path(tempfile.gettempdir()) / "flowvj-motion-cv"
ROOT = Path(__file__).resolve().parents[2]


def excerpt(duration_s):
    """(start s, length s) of the excerpt a track is measured on (see the docstring)."""
    if duration_s >= 2 * EXCERPT_S:
        return EXCERPT_S, EXCERPT_S
    return max(0.0, duration_s - EXCERPT_S), min(EXCERPT_S, duration_s)


def _source_key():
    text = Path(analyzer_module.__file__).read_bytes() + Path(tempo_module.__file__).read_bytes()
    return hashlib.sha1(text).hexdigest()[:12]


def track_data(name, whole=False):
    """Features per video frame, the onset envelope and frame RMS of a track's excerpt (cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{Path(name).stem}-{'whole' if whole else 'excerpt'}-{_source_key()}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    source = FileSource(MUSIC / name)
    start, length = (0.0, source.duration_s) if whole else excerpt(source.duration_s)
    first = int(round(start * source.rate))
    audio = source.samples[first:first + int(round(length * source.rate))]
    n_frames = max(1, int(np.floor(len(audio) / source.rate * FPS)))
    analyzer, feats = Analyzer(sample_rate=source.rate, n_bands=max(2, N_IMAGES)), []
    for i in range(n_frames):
        a, b = frame_bounds(i, FPS, source.rate, analyzer.flux_delay_s)
        feats.append(analyzer.process(audio[a:b]))
    times = np.arange(n_frames) / FPS
    mono = np.asarray(audio, dtype=np.float32)
    data = {"start_s": start, "features": feats, "onsets": onset_envelope(mono, times, FPS, source.rate),
            "rms": frame_rms(mono, times, FPS, source.rate)}
    path.write_bytes(pickle.dumps(data))
    return data


# -- candidate drives: Features -> a number >= 0 (1 = as busy as lately) ---------------------------

def _flux(f):
    return f.flux


def _drums(f):
    return (f.kick + f.snare + f.hats) / 3.0


class Contrast:
    """flux minus `share` x its own mean over the last `mean_s` (attack/release at dt), floored
    at 0: a dense texture of hits raises the mean, so only what stands out of it drives."""

    def __init__(self, share, mean_s=0.5):
        self.share, self.mean_s, self.mean = share, mean_s, 0.0

    def __call__(self, f):
        value = max(f.flux - self.share * self.mean, 0.0)
        self.mean += float(smoothing_coefficient(self.mean_s, f.dt_s)) * (f.flux - self.mean)
        return value


class Released:
    """flux with an instant attack and a release of `release_s`: a hit spreads over the frames after."""

    def __init__(self, release_s):
        self.release_s, self.value = release_s, 0.0

    def __call__(self, f):
        self.value = float(attack_release(self.value, f.flux, f.dt_s, 0.0, self.release_s))
        return self.value


def stateless(fn):
    return lambda: fn


# name -> a factory of a fresh drive (a candidate may keep state from frame to frame)
CANDIDATES = {
    "flux (round 1)": stateless(_flux),
    "flux^0.5": stateless(lambda f: np.sqrt(f.flux)),
    "flux^1.5": stateless(lambda f: f.flux ** 1.5),
    "flux^2": stateless(lambda f: f.flux ** 2),
    "flux - 0.5, floored": stateless(lambda f: max(f.flux - 0.5, 0.0)),
    "flux - 1, floored": stateless(lambda f: max(f.flux - 1.0, 0.0)),
    "flux - 0.5 x its 0.5 s mean": lambda: Contrast(0.5),
    "flux - its 0.5 s mean": lambda: Contrast(1.0),
    "flux - 0.5 x its 0.2 s mean": lambda: Contrast(0.5, 0.2),
    "flux, 30 ms release": lambda: Released(0.03),
    "flux, 60 ms release": lambda: Released(0.06),
    "flux + drums": stateless(lambda f: 0.5 * f.flux + 1.5 * _drums(f)),
    "flux x drums": stateless(lambda f: f.flux * 2.0 * _drums(f)),
    "flux x (1 + onset_strength)": stateless(lambda f: f.flux * (1.0 + f.onset_strength)),
    # added 2026-12-04, after the half-hop flux lowered the drive's contrast
    "flux^1.25 x (1 + onset_strength)": stateless(lambda f: f.flux ** 1.25 * (1.0 + f.onset_strength)),
    "flux^1.5 x (1 + onset_strength)": stateless(lambda f: f.flux ** 1.5 * (1.0 + f.onset_strength)),
    "flux x (1 + onset_strength)^2": stateless(lambda f: f.flux * (1.0 + f.onset_strength) ** 2),
    "drums": stateless(lambda f: 3.0 * _drums(f)),
    "max(kick, snare, hats)": stateless(lambda f: 2.0 * max(f.kick, f.snare, f.hats)),
    "band_onset mean": stateless(lambda f: 3.0 * float(np.mean(f.band_onset))),
    "onset_strength": stateless(lambda f: 3.0 * f.onset_strength),
}


class Proxy:
    """Navigate at PROXY_SIZE with the bundled model's encodings of the demo images; motion either
    decoded (frames in memory) or, for the screen, the latent step |z_i - z_(i-1)|."""

    def __init__(self):
        from flowvj.flow import load_model
        from flowvj.show.generator import Generator

        self.generator = Generator(load_model(None), size=PROXY_SIZE)
        self.latents = self.generator.encode(load_show_images(None, PROXY_SIZE))

    def latents_of(self, feats, mode, factory=None):
        """The Navigator's z per frame with a fresh drive from `factory` (None: the code's own)."""
        original = navigate.Mode.drive
        if factory is not None:
            drive = factory()
            navigate.Mode.drive = lambda self_, f, dt: drive(f)
        try:
            nav = navigate.Navigator(self.latents, mode=mode, seed=0)
            return np.stack([nav.step(f, f.dt_s) for f in feats])
        finally:
            navigate.Mode.drive = original

    def motion(self, feats, mode, factory=None, decoded=True):
        zs = self.latents_of(feats, mode, factory)
        if not decoded:
            return np.r_[0.0, np.linalg.norm(np.diff(zs.reshape(len(zs), -1), axis=0), axis=1)]
        frames = np.concatenate([self.generator.decode_batch(zs[i:i + 64]) for i in range(0, len(zs), 64)])
        grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.r_[0.0, np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))]


def xcorr(onsets, motion):
    lags, r = cross_correlation(onsets, motion, MAX_LAG)
    best = int(np.argmax(r))
    return float(r[best]), float(lags[best] * 1000.0 / FPS)


def quiet_loud(rms, motion, fraction=0.2):
    """Mean motion of the quietest and loudest `fraction` of frames by RMS (frame 0 left out)."""
    order = np.argsort(rms[1:], kind="stable")
    k = max(1, int(len(order) * fraction))
    m = motion[1:]
    return float(m[order[:k]].mean()), float(m[order[-k:]].mean())


def passes(x, lag_ms):
    return x >= 0.5 and abs(lag_ms) <= 1000.0 / FPS + 0.5


def cli_summary(cli):
    """One line: how many of the CLI reports pass (a report with no lag fails)."""
    ok = sum(passes(r["xcorr_peak"], r["xcorr_lag_ms"] if r["xcorr_lag_ms"] is not None else 1e9)
             for r in cli.values())
    return f"CLI (default render size): {ok}/{len(cli)} pairs >= 0.5 within +-1 frame"


def pairs(fold):
    return [(t, m) for t in TRACKS if FOLDS[t] == fold for m in MODES]


def summary(per, fold):
    """(median, min, pairs passing, pairs) of xcorr_peak over a fold's track x mode pairs."""
    xs = [per[k][0] for k in pairs(fold)]
    return float(np.median(xs)), float(np.min(xs)), sum(passes(*per[k]) for k in pairs(fold)), len(xs)


def rank(per):
    """The choice rule, fixed before the search: the tuning fold's worst pair first (the target
    is every track), then its median."""
    tune = summary(per, "tuned on")
    return tune[1], tune[0]


def run(*command):
    """A CLI command's stdout; a failure is retried once (a shared checkout may be mid-edit)."""
    for attempt in range(2):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
        log(f"  {' '.join(command[1:3])} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        time.sleep(30)
    raise RuntimeError(f"{command[1]} failed twice")


def cli_confirm(tracks, modes):
    """render (default sizes) + sync --json through the real CLI; {(track, mode): report}."""
    out, flowvj = {}, str(ROOT / ".venv" / "bin" / "flowvj")
    with tempfile.TemporaryDirectory() as tmp:
        for track in tracks:
            start, length = excerpt(FileSource(MUSIC / f"{track}.ogg").duration_s)
            for mode in modes:
                video = Path(tmp) / f"{track}-{mode}.mp4"
                t0 = time.perf_counter()
                run(flowvj, "render", str(MUSIC / f"{track}.ogg"), "-o", str(video), "--mode", mode,
                    "--start", f"{start:g}", "--duration", f"{length:g}", "--size", CLI_SIZE)
                report = json.loads(run(flowvj, "sync", "--json", str(video)))
                out[(track, mode)] = report
                log(f"  cli {track} {mode}: xcorr {report['xcorr_peak']} at {report['xcorr_lag_ms']} ms "
                    f"({time.perf_counter() - t0:.0f} s)")
    return out


N_IMAGES = len(load_show_images(None, PROXY_SIZE))


def ceilings(data):
    """Per track, before any picture: how well the code's drive follows the onsets (its xcorr
    against the onset envelope, no navigation or decoding), and how well the envelope follows
    itself (the same flux's mean in each frame against its maximum, which the envelope is). A
    track whose envelope is mostly spikes inside frames, dense hits a few ms apart, scores low
    on the second, and no drive of one value per frame can follow it much better."""
    print("| track | fold | drive vs onsets | envelope's mean vs its max |")
    print("|---|---|---|---|")
    for stem, d in data.items():
        source = FileSource(MUSIC / f"{stem}.ogg")
        start, length = excerpt(source.duration_s)
        first = int(round(start * source.rate))
        audio = np.asarray(source.samples[first:first + int(round(length * source.rate))], dtype=np.float32)
        times = np.arange(len(d["onsets"])) / FPS
        flux, flux_times = spectral_flux(audio, source.rate)
        drive = np.array([navigate.motion_drive(f) for f in d["features"]])
        own = xcorr(d["onsets"], _per_frame(flux, flux_times, times, FPS, np.mean))[0]
        print(f"| {stem} | {FOLDS[stem]} | {xcorr(d['onsets'], drive)[0]:.3f} | {own:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finalists", type=int, default=3,
                        help="how many of the latent screen's best go on to the decoded proxy (default 3)")
    parser.add_argument("--cli", action="store_true", help="confirm the code's default drive through the CLI")
    parser.add_argument("--cli-folds", default="held-out", choices=("held-out", "all"))
    parser.add_argument("--cli-only", action="store_true",
                        help="only the CLI check of the code's drive (--cli-folds), no search")
    parser.add_argument("--ceilings", action="store_true",
                        help="only print each track's drive and onset-envelope ceilings (see `ceilings`)")
    args = parser.parse_args()
    started = time.perf_counter()
    cli_tracks = [t for t in TRACKS if args.cli_folds == "all" or FOLDS[t] == "held out"]
    if args.cli_only:                    # renders its own excerpts: no features needed
        cli = cli_confirm(cli_tracks, MODES)
        print("| track | fold | mode | CLI xcorr_peak | CLI lag ms |")
        print("|---|---|---|---|---|")
        for (t, m), r in cli.items():
            print(f"| {t} | {FOLDS[t]} | {m} | {r['xcorr_peak']} | {r['xcorr_lag_ms']} |")
        print(f"\n{cli_summary(cli)}")
        return
    data = {t: track_data(f"{t}.ogg") for t in TRACKS}
    if args.ceilings:
        ceilings(data)
        return
    calm = {c: track_data(c, whole=True) for c in CALM}
    log(f"features of {len(data)} excerpts and {len(calm)} ambient tracks: {time.perf_counter() - started:.0f} s")
    proxy = Proxy()

    # stage 1: every candidate on every pair, motion = latent step (no decode)
    screen = {}
    for name, factory in CANDIDATES.items():
        screen[name] = {k: xcorr(data[k[0]]["onsets"], proxy.motion(data[k[0]]["features"], k[1], factory, False))
                        for k in pairs("tuned on") + pairs("held out")}
    code_screen = {k: xcorr(data[k[0]]["onsets"], proxy.motion(data[k[0]]["features"], k[1], None, False))
                   for k in pairs("tuned on")}
    log(f"stage 1 (latent screen): {time.perf_counter() - started:.0f} s")
    order = sorted(CANDIDATES, key=lambda n: rank(screen[n]), reverse=True)
    finalists = order[:args.finalists] + [n for n in ["flux (round 1)"] if n not in order[:args.finalists]]

    # stage 2: the finalists decoded on the tuning fold; the choice and round 1 on the held-out fold too
    decoded = {n: {} for n in finalists}
    for name in finalists:
        for k in pairs("tuned on"):
            decoded[name][k] = xcorr(data[k[0]]["onsets"], proxy.motion(data[k[0]]["features"], k[1], CANDIDATES[name]))
        log(f"stage 2 {name}: tuning median/min {summary(decoded[name], 'tuned on')[:2]} "
            f"({time.perf_counter() - started:.0f} s)")
    best = max(finalists, key=lambda n: rank(decoded[n]))
    quiet = {}
    for name in dict.fromkeys((best, "flux (round 1)")):
        for k in pairs("held out"):
            decoded[name][k] = xcorr(data[k[0]]["onsets"], proxy.motion(data[k[0]]["features"], k[1], CANDIDATES[name]))
        for c in CALM:
            for m in MODES:
                quiet[(name, c, m)] = quiet_loud(calm[c]["rms"], proxy.motion(calm[c]["features"], m, CANDIDATES[name]))
        log(f"stage 2 held-out {name}: ({time.perf_counter() - started:.0f} s)")

    print("## Stage 1: every candidate, latent-step proxy (32x18 latents, no decode)\n")
    print("| drive | tuning median | tuning min | held-out median | held-out min |")
    print("|---|---|---|---|---|")
    for name in order:
        tune, held = summary(screen[name], "tuned on"), summary(screen[name], "held out")
        print(f"| {name} | {tune[0]:.3f} | {tune[1]:.3f} | {held[0]:.3f} | {held[1]:.3f} |")
    print(f"\n## Stage 2: the {len(finalists)} finalists decoded at {PROXY_SIZE[0]}x{PROXY_SIZE[1]}\n")
    print("| drive | tuning median | tuning min | tuning pass | held-out median | held-out min | held-out pass |")
    print("|---|---|---|---|---|---|---|")
    for name in finalists:
        tune = summary(decoded[name], "tuned on")
        held = summary(decoded[name], "held out") if len(decoded[name]) > len(pairs("tuned on")) else None
        print(f"| {name} | {tune[0]:.3f} | {tune[1]:.3f} | {tune[2]}/{tune[3]} | "
              + (f"{held[0]:.3f} | {held[1]:.3f} | {held[2]}/{held[3]} |" if held else "- | - | - |"))
    same = all(np.isclose(code_screen[k][0], screen[best][k][0]) for k in code_screen)
    print(f"\nchosen on the tuning fold (worst pair, then median): {best!r}")
    print(f"navigate.motion_drive {'IS' if same else 'is NOT'} this choice (the same screen figures on the tuning fold)\n")

    cli = cli_confirm(cli_tracks, MODES) if args.cli else {}
    new, old = decoded[best], decoded["flux (round 1)"]
    print(f"## Per track with {best!r}: proxy (decoded 32x18){', CLI (flowvj render + sync --json)' if cli else ''}; "
          "round 1's flux beside it\n")
    print("| track | fold | mode | xcorr_peak | lag ms | round-1 xcorr | CLI xcorr_peak | CLI lag ms |")
    print("|---|---|---|---|---|---|---|---|")
    for t in TRACKS:
        for m in MODES:
            (x, lag), c = new[(t, m)], cli.get((t, m))
            print(f"| {t} | {FOLDS[t]} | {m} | {x:.3f} | {lag:.0f} | {old[(t, m)][0]:.3f} "
                  f"| {c['xcorr_peak'] if c else '-'} | {c['xcorr_lag_ms'] if c else '-'} |")
    print("\n## Quiet vs loud on the ambient tracks (whole), decoded proxy motion per frame\n")
    print("| track | mode | drive | quietest 20 % | loudest 20 % | ratio |")
    print("|---|---|---|---|---|---|")
    for c in CALM:
        for m in MODES:
            for name in dict.fromkeys((best, "flux (round 1)")):
                q, l = quiet[(name, c, m)]
                print(f"| {c} | {m} | {name} | {q:.3f} | {l:.3f} | {q / max(l, 1e-9):.2f} |")
    held = summary(new, "held out")
    print(f"\nheld-out fold with {best!r}: median xcorr {held[0]:.3f}, min {held[1]:.3f}, "
          f"{held[2]}/{held[3]} pairs >= 0.5 within +-1 frame (decoded proxy)")
    if cli:
        print(cli_summary(cli))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def log(message):
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
