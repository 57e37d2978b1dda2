"""Tempo, beats and beat phase from an onset-strength signal, causally, one frame at a time.

`BeatTracker` keeps the last few seconds of onset strength (spectral flux, one value per analysis
frame). A few times a second it re-estimates

- the tempo: the BPM in the preferred range whose beat period and its multiples (1, 2, 4 and 8
  beats: beat, half bar, bar, two bars) line up best in the autocorrelation of the onset strength
  (`tempo_salience`). Searching only the preferred range (80-180 BPM by default) is the octave
  folding: a half- or double-time pulse can only show up as its multiple inside the range;
- the phase: where a comb at that period, weighted toward recent beats, best matches the onset
  strength (`beat_alignment`);
- the confidence: how much of the autocorrelation's zero-lag energy repeats at the beat period
  (1 = perfectly periodic, 0 = no pulse).

The tracker itself is a predictor: a beat is emitted when the predicted beat time is reached,
before any onset at that beat can be heard, and the prediction is nudged toward each new estimate
(tempo and phase move a fraction of the way, weighted by confidence). A tempo far from the
current one, or a phase far from the prediction, must lead clearly for a few seconds before it
replaces it, and weak estimates (a breakdown, silence) change nothing: the beat runs on at the
last tempo and phase.

`beat_f_measure` scores beat times against a reference grid (the standard F-measure).
"""

import numpy as np


def tempo_salience(onset_strength, frame_rate, bpm_grid, multiples=(1, 2, 4, 8)):
    """How well each candidate tempo explains the periodicity of `onset_strength`.

    Parameters
    ----------
    onset_strength : (n,) array
        One value per frame, oldest first (a few seconds: longer is steadier, shorter locks sooner).
    frame_rate : float
        Frames per second (Hz).
    bpm_grid : (m,) array
        Candidate tempi in BPM.
    multiples : sequence of int
        Lags of these many beats are averaged. Longer lags sharpen the period estimate; powers
        of two follow the bars of 4/4 music, which favours the beat over pulses at 2/3 or 4/3 of
        it (dotted rhythms): with (1, 2, 3, 4) two of the shared tracks locked onto those.

    Returns
    -------
    (m,) array: mean over the multiples of the autocorrelation (mean removed, unbiased, divided by
    its zero-lag value) at those lags, so 1 means perfectly periodic and ~0 means no pulse. Only
    multiples up to half the signal's length count (one beat always does), so a short history
    does not penalise slow tempi.
    """
    x = np.asarray(onset_strength, dtype=np.float64)
    x = x - x.mean()
    n = len(x)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    acf = acf / np.arange(n, 0, -1)                      # unbiased: long lags are not penalised
    if acf[0] <= 0:
        return np.zeros(len(bpm_grid))
    lags = 60.0 * frame_rate / np.asarray(bpm_grid, dtype=np.float64)
    total, count = np.zeros(len(lags)), np.zeros(len(lags))
    for k in multiples:
        fits = (k == 1) | (k * lags <= n / 2)          # at least half the signal overlaps itself
        total += np.where(fits, np.interp(k * lags, np.arange(n), acf, right=0.0), 0.0)
        count += fits
    return total / (count * acf[0])


def beat_alignment(onset_strength, period_frames, n_beats=8, decay=0.8, resolution=0.5):
    """How well a beat comb at each phase matches the end of `onset_strength`.

    Parameters
    ----------
    onset_strength : (n,) array, oldest first.
    period_frames : float
        Beat period in frames (fractional).
    n_beats : int
        Teeth of the comb, counted back from the newest frame; teeth older than the signal are
        dropped.
    decay : float
        Weight of each older tooth relative to the next newer one (recent beats count more).
    resolution : float
        Step of the phase search in frames.

    Returns
    -------
    (lags, scores): lags in frames from the newest frame back to a beat (0..period, step
    `resolution`), and for each the comb's weighted mean onset strength divided by the signal's
    mean (1 = no pulse, higher = beats line up there).
    """
    x = np.asarray(onset_strength, dtype=np.float64)
    n = len(x)
    lags = np.arange(0.0, period_frames, resolution)
    teeth = np.arange(n_beats) * period_frames
    positions = (n - 1) - (lags[:, None] + teeth[None, :])
    weights = (decay ** np.arange(n_beats))[None, :] * (positions >= 0)
    values = np.interp(positions, np.arange(n), x)
    scores = (values * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    return lags, scores / max(x.mean(), 1e-12)


class BeatTracker:
    """Causal tempo and beat tracker fed one onset-strength value per frame.

    Parameters
    ----------
    frame_rate : float
        Frames per second of `update` calls (Hz).
    tempo_range : (float, float)
        Preferred BPM range [lo, hi); only tempi in it are considered (octave folding). A range
        wider than an octave (80-180) leaves tempi near its ends ambiguous: 85 and 170 both fit,
        and the salience decides (a backbeat usually favours the slower one).
    history_s : float
        Seconds of onset strength the estimates look at (8 s: four bars at 120 BPM).
    min_history_s, lock_s, lock_confidence : float
        No tempo before min_history_s of audio, and the first tempo must lead for lock_s seconds
        with a confidence of at least lock_confidence: no beats rather than wrong ones.
    estimate_every_s : float
        Time between estimates; in between, a frame costs a copy and a comparison.
    salience_s : float
        Time constant (s) of the averaged salience that tempo decisions are made on.
    min_confidence : float
        A moment whose salience is below it changes nothing (breakdowns, silence).
    switch_s, switch_margin : float
        A tempo more than 3 % from the current one replaces it only after leading the current
        one's averaged salience by switch_margin for switch_s seconds.
    phase_switch_s, phase_margin : float
        The same for a beat phase more than 0.2 beat from the prediction (usually the off-beat,
        which bass and hats often mark more strongly than the kick).
    tempo_gain, phase_gain : float
        Fraction of the way the period and the phase move toward each estimate, times confidence
        (and, for the phase, times the pulse clarity of the recent onsets).
    multiples, n_comb : sequence of int, int
        Beat multiples averaged in `tempo_salience`; comb teeth in `beat_alignment`.
    """

    def __init__(self, frame_rate, tempo_range=(80.0, 180.0), history_s=8.0, min_history_s=2.0,
                 lock_s=1.0, lock_confidence=0.15, estimate_every_s=0.1, salience_s=3.0, min_confidence=0.1,
                 switch_s=2.0, switch_margin=1.2, phase_switch_s=2.0, phase_margin=1.5, tempo_gain=0.25,
                 phase_gain=0.1, multiples=(1, 2, 4, 8), n_comb=8):
        lo, hi = tempo_range
        if not 0 < lo < hi:
            raise ValueError(f"tempo_range must be 0 < lo < hi, got {tempo_range}")
        self.frame_rate = float(frame_rate)
        self.bpm_grid = np.arange(lo, hi, 0.1)
        self.history = np.zeros(int(round(history_s * frame_rate)))
        self.min_frames = int(round(min_history_s * frame_rate))
        self.every = max(1, int(round(estimate_every_s * frame_rate)))
        self.lock_s, self.lock_confidence, self.salience_s = lock_s, lock_confidence, salience_s
        self.min_confidence, self.switch_s, self.switch_margin = min_confidence, switch_s, switch_margin
        self.phase_switch_s, self.phase_margin = phase_switch_s, phase_margin
        self.tempo_gain, self.phase_gain = tempo_gain, phase_gain
        self.multiples, self.n_comb = multiples, n_comb
        self.reset()

    def reset(self):
        """Forget the tempo and the onset history."""
        self.history[:] = 0.0
        self.frames = 0
        self.period_s = 0.0            # 0 = no tempo yet
        self.next_beat_s = self.last_beat_s = 0.0
        self.confidence = 0.0
        self._salience = np.zeros(len(self.bpm_grid))
        self._estimates = 0
        self._challenger_bpm, self._challenger_since = 0.0, 0.0
        self._phase_since = None

    def update(self, onset_strength, time_s, delay_s=0.0):
        """Add one frame's onset strength; `time_s` is the stream time of the frame's newest
        sample and `delay_s` how long after an onset its strength peaks, so that beats land on
        onsets. Returns True when a predicted beat falls in (previous frame, time_s]."""
        self.history[:-1] = self.history[1:]
        self.history[-1] = onset_strength
        self.frames += 1
        if self.frames >= self.min_frames and self.frames % self.every == 0:
            self._estimate(time_s, time_s - delay_s)
        if self.period_s <= 0 or self.next_beat_s > time_s:
            return False
        while self.next_beat_s <= time_s:
            self.last_beat_s = self.next_beat_s
            self.next_beat_s += self.period_s
        return True

    def state(self, time_s):
        """(tempo_bpm, beat_phase 0..1 at time_s, confidence 0..1); (0, 0, 0) before a tempo."""
        if self.period_s <= 0:
            return 0.0, 0.0, 0.0
        phase = ((time_s - self.last_beat_s) / self.period_s) % 1.0
        return 60.0 / self.period_s, float(phase), float(self.confidence)

    def _estimate(self, now_s, onset_s):
        """Re-estimate at stream time now_s; onset_s is the time the newest onset strength is
        credited to (now_s - delay)."""
        x = self.history[-min(self.frames, len(self.history)):]
        bpm, salience = self._choose_tempo(x)
        if salience < self.min_confidence:                 # nothing periodic now: run on as we are
            return
        if self.period_s <= 0 and self.confidence < self.lock_confidence:
            return                                         # no beat yet rather than a wrong one
        if self.period_s <= 0 or abs(60.0 / bpm - self.period_s) > 0.03 * self.period_s:
            # a first tempo, or one far from the current: it must keep leading before we take it
            if not (self._challenger_bpm and abs(bpm - self._challenger_bpm) < 0.03 * bpm):
                self._challenger_bpm, self._challenger_since = bpm, onset_s
                return
            if onset_s - self._challenger_since < (self.lock_s if self.period_s <= 0 else self.switch_s):
                return
            self.period_s = 0.0                            # it held: start over at its tempo
        self._challenger_bpm = 0.0
        lags, scores = beat_alignment(x, 60.0 * self.frame_rate / bpm, self.n_comb)
        if self.period_s <= 0:
            self.period_s = 60.0 / bpm
            self.last_beat_s = onset_s - lags[np.argmax(scores)] / self.frame_rate
            self.next_beat_s = self.last_beat_s + self.period_s
            while self.next_beat_s <= now_s:
                self.next_beat_s += self.period_s
            self._phase_since = None
            return
        self.period_s += self.tempo_gain * self.confidence * (60.0 / bpm - self.period_s)
        self._follow_phase(lags, scores, onset_s)

    def _choose_tempo(self, x):
        """(bpm, its salience now): the best tempo of the averaged salience, kept at the current
        tempo unless another leads it by switch_margin. Updates self.confidence."""
        salience = tempo_salience(x, self.frame_rate, self.bpm_grid, self.multiples)
        # decisions use the salience averaged over a few seconds (a running mean while warming
        # up), so one odd moment (a fill, the start of a breakdown) cannot switch tempo
        self._estimates += 1
        weight = max(1.0 / self._estimates, -np.expm1(-self.every / self.frame_rate / self.salience_s))
        self._salience += weight * (salience - self._salience)
        best = int(np.argmax(self._salience))
        if self.period_s > 0:
            current = 60.0 / self.period_s
            near = np.flatnonzero(np.abs(self.bpm_grid - current) <= 0.03 * current)
            local = int(near[np.argmax(self._salience[near])])
            if self._salience[best] < self.switch_margin * self._salience[local]:
                best = local                               # the current tempo still explains it
        self.confidence = float(np.clip(self._salience[best], 0.0, 1.0))
        bpm = self.bpm_grid[best]
        if 0 < best < len(salience) - 1:                   # parabola through the neighbours
            a, b, c = salience[best - 1: best + 2]
            if a - 2 * b + c < 0:
                bpm += 0.5 * (a - c) / (a - 2 * b + c) * (self.bpm_grid[1] - self.bpm_grid[0])
        return bpm, salience[best]

    def _follow_phase(self, lags, scores, onset_s):
        """Nudge the next predicted beat toward the comb's best phase near the prediction, or jump
        to a clearly better phase elsewhere once it has led for phase_switch_s."""
        period_frames = self.period_s * self.frame_rate
        predicted = ((onset_s - self.next_beat_s) * self.frame_rate) % period_frames   # lag of the beat
        distance = np.abs((lags - predicted + period_frames / 2) % period_frames - period_frames / 2)
        near = np.flatnonzero(distance <= 0.2 * period_frames)
        best, local = int(np.argmax(scores)), int(near[np.argmax(scores[near])])
        jump = best != local and scores[best] >= self.phase_margin * scores[local]
        if jump:
            self._phase_since = onset_s if self._phase_since is None else self._phase_since
            jump = onset_s - self._phase_since >= self.phase_switch_s
        else:
            self._phase_since = None
        chosen = best if jump else local
        beat_s = onset_s - lags[chosen] / self.frame_rate
        error = (beat_s - self.next_beat_s + self.period_s / 2) % self.period_s - self.period_s / 2
        # pulse clarity: a comb score near 1 means the recent onsets do not mark the beat (a pad
        # swelling in a breakdown); it takes ~3.5 (onsets on the beat 3.5x the mean) to count fully
        clarity = float(np.clip((scores[chosen] - 1.5) / 2.0, 0.0, 1.0))
        self.next_beat_s += (1.0 if jump else self.phase_gain * self.confidence * clarity) * error
        self.next_beat_s = max(self.next_beat_s, self.last_beat_s + 0.5 * self.period_s)


def beat_f_measure(estimated, reference, tolerance_s=0.07):
    """F-measure of estimated beat times against reference beat times (seconds).

    Each estimated beat matches at most one reference beat within +-tolerance_s and each
    reference at most one estimate; the number of matches is the largest possible (a two-pointer
    sweep over both sorted lists, optimal because every window has the same width).
    precision = matches / estimates, recall = matches / references, F = 2PR / (P + R); 0.0 when
    either list is empty or nothing matches.
    """
    est, ref = np.sort(np.asarray(estimated, float)), np.sort(np.asarray(reference, float))
    i = j = matches = 0
    while i < len(est) and j < len(ref):
        if abs(est[i] - ref[j]) <= tolerance_s:
            matches, i, j = matches + 1, i + 1, j + 1
        elif ref[j] < est[i]:
            j += 1
        else:
            i += 1
    if matches == 0:
        return 0.0
    precision, recall = matches / len(est), matches / len(ref)
    return 2 * precision * recall / (precision + recall)
