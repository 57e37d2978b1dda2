"""Choose the beat tracker's settings by cross-validation on the shared LMMS tracks.

The 19 LMMS tracks of ../shared/data/music (sections A and A2 of its README: exact tempo and beat
grid in `.beats`) are split once, by a rule fixed before any figure was seen: in name order, the
1st, 3rd, 5th, ... track is in the tuning fold, the 2nd, 4th, ... is held out (`FOLDS`). Every
candidate setting of a stage in `STAGES` runs on every track; the setting with the best median
beat F on the tuning fold (ties: the best minimum) is the choice, and the figures that count are
the held-out fold's with that choice. Stages 2 to 5 (how fast a new tempo takes over, the
range) only admit the settings with the fewest cross-fades between tuning-fold tracks
(`HAND_MIXES` and `rule_mixes()`) that re-lock later than 4 beats after the fade.
`BeatTracker`'s defaults and `analyzer.PHASE_INPUT` must be the final choice (the script says
whether they are). What the reverse split (choosing on the held-out fold) would choose is
printed too, as a check that the choice does not hang on the split; with the choice, the
held-out mixes (`HELD_OUT_MIXES` and `rule_mixes("held out")`, held-out tracks only) are scored
as well. In every stage only settings that keep the beat through the synthesised 4-bar
breakdowns of tests/test_tempo.py are eligible (`keeps_the_beat`).

Scoring (shared with audio_accuracy.py):
- tempo error after folding into the preferred range: the estimate and the declared tempo are
  compared modulo octaves (x2, /2), so 180 BPM reported as 90 in an 80-180 range is right, while
  2/3 and 3/2 errors count in full;
- beat F (+-70 ms, beats after 5 s) against the reference at the tracker's metrical level: the
  grid itself, or, when the tempo is reported at half the declared one, every other reference
  beat (the better of the two ways to take them: both are beats of the grid).

The analyzer's front end runs once per track (1024-sample blocks, as live); what it feeds the
tracker (and the fluxes every phase input is made of) is cached under $TMPDIR/flowvj-beat-cv-3
and replayed for each setting, on --jobs worker processes; the scores are cached too, keyed by
the settings and the tracker's code.

    .venv/bin/python benchmarks/audio/beat_cv.py [--jobs 2]
"""

import argparse
import hashlib
import inspect
import itertools
import json
import multiprocessing
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from flowvj.audio.analyzer import PHASE_INPUT, Analyzer, _weighted_median, phase_strength
from flowvj.audio.sources import FileSource
from flowvj.audio.synth import synth_track
from flowvj.audio import tempo
from flowvj.audio.tempo import BeatTracker, beat_f_measure

MUSIC = Path(__file__).resolve().parents[3] / "shared" / "data" / "music"
CACHE = Path(tempfile.gettempdir()) / "flowvj-beat-cv-3"
RATE, BLOCK = 44100, 1024
LOCK_IN_S = 5.0
TOLERANCE_S = 0.07
TRACKS = sorted(p.stem for p in MUSIC.glob("lmms_*.ogg"))
FOLDS = {stem: ("tuned on" if i % 2 == 0 else "held out") for i, stem in enumerate(TRACKS)}
TRACKS_PER_FOLD = {fold: sum(f == fold for f in FOLDS.values()) for fold in ("tuned on", "held out")}
# Candidate settings, searched in five stages (a full product would be 373248 runs of 19 tracks):
# stage 1 the tempo and phase inputs, stage 2 how fast a new tempo takes over, with stage 1's
# choice fixed, stage 3 the quick switch (BeatTracker._quick_switch) with stage 2's, stage 4 the
# switch's wait and averaging again (held at 0.5 s in stages 1-3) with stage 3's, stage 5 the
# preferred tempo range with stage 4's. Each line is one choice the tracker's docstring explains.
# The phase comb's margin (1.5) and teeth (16, decay 0.9) were chosen by the same search before
# (git history of this file) and are held there.
STAGES = [
    {"thirds": (0.0, 0.5),               # the 2/3-tempo penalty in tempo_salience
     "phase_input": ("log", "linear", "snare", "linear*snare")},   # analyzer.phase_strength
    {"recency_s": (1.0, 1.5, 2.0),       # the autocorrelation's memory
     "relock_beats": (0, 8, 16)},        # the fresh comb and quick phase after a lock or switch
    {"quick_recency_s": (0.0, 0.5, 0.75, 1.0),   # the quick salience that lets go of a mixed-out tempo
     "quick_s": (0.0, 0.25, 0.5),        # its averaging
     "quick_gone": (0.1, 0.2),           # how low the current tempo must fall in it
     "resume_s": (0.0, 8.0),             # a switch back within this long resumes the old grid
     "quick_teeth": (0, 4)},             # the start-over comb after a quick switch (0: 16 teeth)
    {"switch_s": (0.3, 0.4, 0.5),        # how long a new tempo must lead before it is taken
     "salience_s": (0.3, 0.4, 0.5)},     # the averaging of the salience that decisions are made on
    # the preferred range: round 1's 80-180 (wider than an octave: 85 and 170 both fit, and the
    # salience picks) and the one-octave ranges DJ software offers for its BPM analysis (Traktor
    # and Serato list these), where every tempo has one place
    {"tempo_range": ((80.0, 180.0), (68.0, 135.0), (78.0, 155.0), (88.0, 175.0), (98.0, 195.0),
                     (108.0, 215.0))},
]
# Stages 2 and 3 also need re-locks: cross-fades between tuning-fold tracks of different tempo
# (from, its start s, to, its start s); only the settings with the fewest of them re-locking later
# than 4 beats are eligible. The first four were picked by hand; the rest by `rule_mixes`.
HAND_MIXES = [("lmms_Shovon-ProgressiveHousePluckDemo_128bpm", 60, "lmms_Thomasso-AxeFromThe80s_140bpm", 60),
              ("lmms_EsoXLB-CPU_128bpm", 60, "lmms_Oglsdl-PpTrip_140bpm", 30),
              ("lmms_Alf42red-Mauiwowi_102bpm", 30, "lmms_Impulslogik-Zen_140bpm", 60),
              ("lmms_Skiessi-Onion_140bpm", 60, "lmms_CapDan-ReggaetonTry_180bpm", 20)]
RULE_MIN_S, RULE_START_S = 60.0, 30.0


def rule_mixes(fold="tuned on"):
    """More mixes by a rule fixed before their figures were seen: each of the fold's tracks of at
    least RULE_MIN_S (name order) into the next such track whose declared tempo differs by more
    than 3 % with octaves folded (wrapping round), both from RULE_START_S."""
    stems = [s for s in TRACKS if FOLDS[s] == fold                # the header's length: no decode
             and soundfile.info(str(MUSIC / f"{s}.ogg")).duration >= RULE_MIN_S]
    mixes = []
    for i, a in enumerate(stems):
        for b in stems[i + 1:] + stems[:i]:
            if tempo_error(declared_bpm(b), declared_bpm(a)) > 0.03:
                mixes.append((a, RULE_START_S, b, RULE_START_S))
                break
    return mixes


# Held-out mixes (held-out tracks only), reported with the choice and by audio_accuracy.py.
HELD_OUT_MIXES = [("lmms_Skiessi-222_100bpm", 0.0, "lmms_TameAnderson-MakeMe_140bpm", 60.0),
                  ("lmms_TameAnderson-MakeMe_140bpm", 60.0, "lmms_Jousboxx-BuzzerBeater_128bpm", 60.0),
                  ("lmms_Jousboxx-BuzzerBeater_128bpm", 60.0, "lmms_CapDan-ReggaeTry_180bpm", 0.0),
                  ("lmms_Saber-FinalStep_140bpm", 60.0, "lmms_DirtyLove_177bpm", 20.0)]
MIX_HEAD_S, MIX_FADE_S = 20.0, 4.0
# Every choice must also keep the beat through a 4-bar breakdown (pad only, and silent) of a
# synthesised track: tests/test_tempo.py's case, a requirement rather than a score.
BREAKDOWN_BPM = 128.0
# Stage 1 runs with the later stages' settings at these values (the tracker's defaults before this
# search, the quick switch off; salience_s 0.5 and switch_s 0.5 were chosen by an earlier search
# and are held there until stage 4; quick_floor at 0.3).
START = {"recency_s": 2.0, "relock_beats": 0, "quick_recency_s": 0.0, "quick_s": 0.0, "quick_gone": 0.1,
         "resume_s": 0.0, "quick_teeth": 0, "switch_s": 0.5, "salience_s": 0.5}


def declared_bpm(stem):
    return float(stem.rsplit("_", 1)[1].removesuffix("bpm"))


def tempo_error(estimated, declared):
    """|estimated / declared - 1| after folding out octaves (0.5, 1, 2 ...); 1.0 for no tempo."""
    if estimated <= 0:
        return 1.0
    octaves = np.log2(estimated / declared)
    return float(abs(2 ** (octaves - np.round(octaves)) - 1))


def level_f(beats, reference, estimated_bpm, declared, after_s=LOCK_IN_S):
    """Beat F after `after_s` against the reference at the tracker's metrical level."""
    beats, reference = np.asarray(beats, float), np.asarray(reference, float)
    ratio = estimated_bpm / declared if estimated_bpm > 0 else 1.0
    if ratio < 0.75:
        grids = [reference[::2], reference[1::2]]
    elif ratio > 1.5:
        grids = [np.sort(np.concatenate([reference, (reference[:-1] + reference[1:]) / 2]))]
    else:
        grids = [reference]
    return max(beat_f_measure(beats[beats > after_s], g[g > after_s], TOLERANCE_S) for g in grids)


def load_reference(stem):
    return np.loadtxt(MUSIC / f"{stem}.beats", comments="#")[:, 0]


class _Recorder:
    """Stands in for the analyzer's BeatTracker and keeps what it is fed (and runs the real one),
    with the frame's linear and snare-range flux (from the onset picker, called just before)."""

    def __init__(self, analyzer):
        self.tracker, self.calls, self.flux = analyzer.tempo, [], None
        picker_update = analyzer._onsets.update

        def keep_flux(flux, dt_s):
            self.flux = flux
            return picker_update(flux, dt_s)

        analyzer._onsets.update = keep_flux

    def update(self, onset, time_s, delay_s=0.0, phase=None):
        self.calls.append((onset, time_s, delay_s, float(self.flux[0]), float(self.flux[2])))
        return self.tracker.update(onset, time_s, delay_s, phase)

    def __getattr__(self, name):
        return getattr(self.tracker, name)


def record(samples):
    """(n, 5) array of (onset, time_s, delay_s, linear flux, snare flux) per frame of the analyzer."""
    analyzer = Analyzer(RATE)
    analyzer.tempo = _Recorder(analyzer)
    for start in range(0, len(samples) - BLOCK + 1, BLOCK):
        analyzer.process(samples[start:start + BLOCK])
    return np.array(analyzer.tempo.calls)


def tracker_inputs(stem):
    """What the analyzer feeds its tracker on `stem` (see `record`), cached."""
    path = CACHE / f"{stem}.npy"
    if not path.is_file():
        CACHE.mkdir(exist_ok=True)
        np.save(path, record(FileSource(MUSIC / f"{stem}.ogg", RATE).samples))
    return np.load(path)


def replay(calls, phase_input="linear", **options):
    """Run a BeatTracker with `options` on recorded inputs, its phase comb fed `phase_input` (see
    analyzer.phase_strength): (tempo BPM, beat times, tempo at each beat)."""
    tracker = BeatTracker(RATE / 512, **options)
    beats, beat_tempi, tempi, confidences = [], [], [], []
    for onset, time_s, delay_s, linear, snare in calls:
        if tracker.update(onset, time_s, delay_s, phase_strength(phase_input, linear, snare, onset)):
            beats.append(tracker.last_beat_s)
            beat_tempi.append(60.0 / tracker.period_s)
        if tracker.period_s > 0:
            tempi.append(60.0 / tracker.period_s)
            confidences.append(tracker.confidence)
    return _weighted_median(tempi, confidences), np.array(beats), np.array(beat_tempi)


def options_of(names, setting, base=None):
    """BeatTracker options (plus phase_input) for one setting of a stage's names."""
    options = dict(base or {})
    for name, value in zip(names, setting):
        if name == "comb":
            options["n_comb"], options["comb_decay"] = value
        else:
            options[name] = value
    return options


def mix_inputs(a, a_start, b, b_start):
    """Tracker inputs of a cross-fade from a (MIX_HEAD_S s from a_start, the last MIX_FADE_S
    fading out) into b (from b_start, 30 s), and b's reference beats in the mix's time."""
    path = CACHE / f"mix-{a}-{b}.npy"
    if not path.is_file():
        xa, xb = FileSource(MUSIC / f"{a}.ogg", RATE).samples, FileSource(MUSIC / f"{b}.ogg", RATE).samples
        n_head, n_fade = int(MIX_HEAD_S * RATE), int(MIX_FADE_S * RATE)
        head = xa[int(a_start * RATE):int(a_start * RATE) + n_head]
        tail = xb[int(b_start * RATE):int(b_start * RATE) + 30 * RATE]
        ramp = np.linspace(0, np.pi / 2, n_fade)
        mix = np.concatenate([head[:-n_fade], head[-n_fade:] * np.cos(ramp) + tail[:n_fade] * np.sin(ramp),
                              tail[n_fade:]]).astype(np.float32)
        CACHE.mkdir(exist_ok=True)
        np.save(path, record(mix))
    return np.load(path), load_reference(b) + MIX_HEAD_S - MIX_FADE_S - b_start


def breakdown_inputs(silent):
    """Tracker inputs of the synthesised 128 BPM track with a 4-bar pad-only breakdown (bars
    8-11; silent: those bars zeroed), as tests/test_tempo.py builds it, and the breakdown's
    (start, end) s."""
    path = CACHE / f"breakdown-{int(silent)}.npy"
    bar = 4 * 60 / BREAKDOWN_BPM
    if not path.is_file():
        audio = synth_track(BREAKDOWN_BPM, 40, seed=1, breakdowns=[(8, 4)]).audio.copy()
        if silent:
            audio[int(8 * bar * RATE):int(12 * bar * RATE)] = 0.0
        CACHE.mkdir(exist_ok=True)
        np.save(path, record(audio))
    return np.load(path), (8 * bar, 12 * bar)


def keeps_the_beat(calls, start_s, end_s, options):
    """True if the beat runs on through the breakdown: 16 beats in it, every beat from its start
    within 50 ms of the grid and the tempo within 1 % (the test's check)."""
    _, beats, beat_tempi = replay(calls, **options)
    period = 60 / BREAKDOWN_BPM
    during = beats[(beats >= start_s - 0.05) & (beats < end_s - 0.05)]
    after = beats >= start_s - 0.05
    errors = beats[after] - np.round(beats[after] / period) * period
    return bool(len(during) == 16 and np.max(np.abs(errors)) < 0.05
                and np.all(np.abs(beat_tempi[after] / BREAKDOWN_BPM - 1) < 0.01))


def relock_beats(beats, tempi, reference, declared, after_s):
    """Beats (of the new tempo) from after_s to the first of 4 emitted beats in a row on the
    reference grid with the tempo within 2 % (octaves folded out); inf if never."""
    for i in np.flatnonzero(beats >= after_s):
        window = beats[i:i + 4]
        if len(window) == 4 and all(tempo_error(t, declared) <= 0.02 for t in tempi[i:i + 4]) \
                and all(np.min(np.abs(reference - b)) <= TOLERANCE_S for b in window):
            return (beats[i] - after_s) / (60.0 / declared)
    return float("inf")


def _track_score(job):
    """(tempo error, beat F, BPM) of one track under one setting (a worker's job)."""
    stem, calls, options = job
    bpm, beats, _ = replay(calls, **options)
    return tempo_error(bpm, declared_bpm(stem)), level_f(beats, load_reference(stem), bpm, declared_bpm(stem)), bpm


def _mix_score(job):
    """Re-lock beats of one mix under one setting (a worker's job)."""
    (calls, reference), to, options = job
    _, beats, beat_tempi = replay(calls, **options)
    return relock_beats(beats, beat_tempi, reference, declared_bpm(to), MIX_HEAD_S)


def _fingerprint(code):
    """Bytes that change when a function's logic does, not its docstring or default arguments
    (those are in `defaults`): the bytecode, the names, and the constants other than strings."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        if inspect.iscode(const):
            parts.append(_fingerprint(const))
        elif not isinstance(const, str):
            parts.append(repr(const).encode())
    return b"".join(parts)


def evaluate(options, inputs, mixes, pool):
    """({track: (tempo error, beat F, BPM)}, [re-lock beats per mix of `mixes`]) of one setting,
    cached under CACHE by the options, the tracker's other defaults and its code's logic (a rerun
    prints at once; neither docstrings nor changing the defaults to the choice invalidate it). `mixes`: [(inputs,
    reference), to-track]."""
    defaults = {k: repr(v.default) for k, v in inspect.signature(BeatTracker.__init__).parameters.items()
                if k not in options and v.default is not inspect.Parameter.empty}
    functions = [tempo._acf, tempo.tempo_salience, tempo.beat_alignment, phase_strength] \
        + [f for _, f in sorted(vars(BeatTracker).items()) if inspect.isfunction(f)]
    code = hashlib.sha1(b"".join(_fingerprint(f.__code__) for f in functions)).hexdigest()
    key = json.dumps([options, defaults, [m[1] for m in mixes]], sort_keys=True) + code
    path = CACHE / f"scores-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        per, relocks = json.loads(path.read_text())
        return {stem: tuple(v) for stem, v in per.items()}, relocks
    scores = pool.map(_track_score, [(stem, inputs[stem], options) for stem in TRACKS])
    per = dict(zip(TRACKS, scores))
    relocks = pool.map(_mix_score, [(mix, to, options) for mix, to in mixes])
    path.write_text(json.dumps([per, relocks]))
    return per, relocks


def median_f(per, fold):
    f = [per[stem][1] for stem in TRACKS if FOLDS[stem] == fold]
    return round(float(np.median(f)), 3), round(float(np.min(f)), 3)


def relock_rank(relocks):
    """Sort key of a setting's tuning-mix re-locks: the fewest mixes over 4 beats first."""
    return -sum(r > 4 for r in relocks)


def choose(scores, relocks, steady, fold, stage):
    """The setting with the best median F (ties: minimum) on `fold`, among those that keep the
    beat through the synthesised breakdowns (all, if none does); from stage 2 on only among
    those of them with the fewest tuning-mix re-locks over 4 beats."""
    eligible = [s for s in scores if steady[s]] or list(scores)
    if stage >= 2:
        best_rank = max(relock_rank(relocks[s]) for s in eligible)
        eligible = [s for s in eligible if relock_rank(relocks[s]) == best_rank]
    return max(eligible, key=lambda s: median_f(scores[s], fold))


def current_defaults(stage):
    """The settings of the stages before `stage` as the code has them now: BeatTracker's
    defaults and analyzer.PHASE_INPUT."""
    parameters = inspect.signature(BeatTracker.__init__).parameters
    names = [name for grid in STAGES[:stage - 1] for name in grid]
    return {name: PHASE_INPUT if name == "phase_input" else parameters[name].default for name in names}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--from-stage", type=int, default=1, choices=range(1, len(STAGES) + 1),
                        help="start at this stage, the earlier stages' settings at the tracker's "
                             "defaults (their choice, which the full run checks); default 1")
    args = parser.parse_args()
    inputs = {}
    for stem in TRACKS:
        print(f"front end: {stem}", file=sys.stderr, flush=True)
        inputs[stem] = tracker_inputs(stem)
    tuning_mixes = [(mix_inputs(*mix), mix[2]) for mix in HAND_MIXES + rule_mixes()]
    held_mixes = [(mix_inputs(*mix), mix[2]) for mix in HELD_OUT_MIXES + rule_mixes("held out")]
    breakdowns = [breakdown_inputs(silent) for silent in (False, True)]
    chosen = dict(START) if args.from_stage == 1 else current_defaults(args.from_stage)
    reverse = dict(chosen)
    with multiprocessing.Pool(args.jobs) as pool:
        for number, grid in enumerate(STAGES[args.from_stage - 1:], args.from_stage):
            names = list(grid)
            scores, relocks, steady = {}, {}, {}
            for setting in itertools.product(*grid.values()):
                options = options_of(names, setting, chosen)
                print(f"stage {number}: {options}", file=sys.stderr, flush=True)
                scores[setting], relocks[setting] = evaluate(options, inputs, tuning_mixes, pool)
                steady[setting] = all(keeps_the_beat(calls, *span, options) for calls, span in breakdowns)
            print(f"\nstage {number} ({', '.join(names)}), with {chosen}:\n")
            print("| setting | tuning median F | tuning min F | held-out median F | held-out min F "
                  "| tempo ok (all) | tuning re-locks, beats | keeps the beat in breakdowns |")
            print("|---|---|---|---|---|---|---|---|")
            for setting, per in scores.items():
                ok = sum(per[s][0] <= 0.02 for s in TRACKS)
                print(f"| {setting} | {median_f(per, 'tuned on')[0]} | {median_f(per, 'tuned on')[1]} "
                      f"| {median_f(per, 'held out')[0]} | {median_f(per, 'held out')[1]} | {ok}/{len(TRACKS)} "
                      f"| {[round(float(r), 1) for r in relocks[setting]]} | {'yes' if steady[setting] else 'no'} |")
            best = choose(scores, relocks, steady, "tuned on", number)
            back = choose(scores, relocks, steady, "held out", number)
            chosen, reverse = options_of(names, best, chosen), options_of(names, back, reverse)
            final = scores[best]
            print(f"\nchosen on the tuning fold: {dict(zip(names, best))}; the reverse split would choose "
                  f"{dict(zip(names, back))} (its tuning-fold F: {median_f(scores[back], 'tuned on')})")
        _, held_relocks = evaluate(chosen, inputs, held_mixes, pool)
    same = chosen == current_defaults(len(STAGES) + 1)
    print(f"\nchosen: {chosen}")
    print(f"BeatTracker defaults and analyzer.PHASE_INPUT {'ARE' if same else 'are NOT'} this choice")
    print("\n| track | fold | declared BPM | estimated BPM | tempo error % | beat F >5s |")
    print("|---|---|---|---|---|---|")
    for stem in TRACKS:
        err, f, bpm = final[stem]
        print(f"| {stem} | {FOLDS[stem]} | {declared_bpm(stem):.0f} | {bpm:.2f} | {100 * err:.2f} | {f:.3f} |")
    print(f"\nheld-out fold with the choice: median F {median_f(final, 'held out')[0]}, "
          f"min {median_f(final, 'held out')[1]}; tempo within 2 % on "
          f"{sum(final[s][0] <= 0.02 for s in TRACKS if FOLDS[s] == 'held out')}/{TRACKS_PER_FOLD['held out']}; "
          f"re-lock on the held-out mixes {[round(float(r), 1) for r in held_relocks]} beats")


if __name__ == "__main__":
    main()
