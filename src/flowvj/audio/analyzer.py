"""The causal, block-wise analyzer: audio blocks in, one `Features` record per block out.

Live and offline share it: `Analyzer.process(block)` takes the next block of mono float32 audio
(any length; 1024 samples at 44.1 kHz by default) and returns what the visuals need at the end
of that block. Inside, a short-time spectrum is taken every `hop_size` samples (512 = 11.6 ms,
whatever the block size, so onsets and beats are found with the same resolution and latency for
any block size), and from it:

- adaptive gain: a long-term average of the power (fast rise, slow fall, in seconds) that every
  level is divided by, so a quiet bedroom mix and a loud club feed give the same 0..1 range;
- RMS and `n_bands` log-spaced band energies, each relative to its own long-term average
  (projectM's "relative loudness") and mapped to 0..1 by `_unit` (0.5 = average, 0.75 = twice);
- spectral flux (the rise of the gain-normalised magnitude, so a loud hit scores higher than a
  quiet one) overall, per band, and in fixed kick / snare / hats ranges, each with a causal event
  flag: the first frame rising above an adaptive threshold, then a refractory time. An onset is
  reported in the block in which it is heard: 18 ms after it, median, on the 808 kicks;
- `flux`, what the travelling modes move with: the rise of log-compressed amplitudes in 12
  equal-weight log bands, on its own frames every half hop (`_MotionFlux`), averaged over the
  block and taken relative to its own recent average. Unlike the events it has no threshold, so
  soft hits move the picture a little and hard ones a lot, frame by frame, as a viewer hears
  them; `Analyzer.flux_delay_s` says how long after an onset its flux is counted, so an offline
  render can give each video frame the onsets nearest to it (engine.frame_bounds);
- attack/release smoothing with time constants in seconds, coefficients from each frame's dt,
  so the envelope does not depend on the hop or block size (`attack_release`);
- tempo, beats and beat phase from `tempo.BeatTracker`, fed with the log-magnitude flux of 12
  equal-weight log bands for the tempo (every onset counts, loud or quiet; the bass as much as
  the treble) and, for the phase, the geometric mean of the overall linear flux and its 1-5 kHz
  part (`PHASE_INPUT`, `phase_strength`: the loud snare and the kick's click decide where the
  beat is, not the offbeat hats and bass; why in tempo.py); it predicts each beat, so
  `beat_event` can fire `latency_s` before the beat is heard.

Only numpy on the per-block path. aubio was measured and left out as the tracker: aubio.tempo
is causal and block-wise, but on the 19 shared LMMS tracks (hop 512, its better setting) its
tempo was off by more than 2 % on 3 (2/3-tempo locks) and its median beat F was 0.918 / 0.889
(tuning / held-out fold), against 19/19 and 0.963 / 0.968 here (benchmarks/audio/audio_accuracy.py
runs both, 2026-12-01); aubio.onset gives one overall onset function
(not per band), 41 ms after the 808 kicks at hop 512; the numpy flux gives every band from one
FFT. Levels are zero until audio arrives; the tempo is 0 until the tracker locks.
"""

from dataclasses import dataclass

import numpy as np

from .tempo import BeatTracker

KICK_HZ = (30.0, 150.0)      # bass drum fundamental and its pitch drop
SNARE_HZ = (1000.0, 5000.0)  # snare/clap noise above the bass and pads' strongest partials
HATS_HZ = (7000.0, 16000.0)  # hats and cymbals
DRUM_REFRACTORY_S = (0.1, 0.1, 0.05)   # shortest gap between two kick / snare / hat events
ONSET_REFRACTORY_S = 0.05   # and between two overall or per-band events
# An event needs the flux above this fraction of its recent peak: the kick's is the highest, as
# bass notes share its range (their flux reaches ~0.4-0.7 of a kick's in the demo synth).
DRUM_FLOOR = (0.5, 0.4, 0.3)
ONSET_FLOOR = 0.3
# The smallest flux peak an onset signal is measured against, as an amplitude relative to the
# music's long-term RMS (-54 dB): hats bands of real tracks peak ~5x above it, the top band of a
# kick-only file ~2x below it, so that band stays near 0 instead of showing its noise as hits.
MIN_ONSET_PEAK = 0.002
# `flux` compresses each bin's amplitude (relative to the music's long-term RMS) as
# log1p(FLUX_COMPRESSION x amplitude): quiet hats and loud kicks both count, the loud more. On the
# five LMMS beat tracks, 5-15 gave the best correlation with the onset envelope a viewer's eye
# follows (metrics.onset_envelope): 0.79-0.85 at 0 lag, against 0.69-0.79 at 500, 0.62-0.74 at
# 5000 (the tempo's flux uses ~2560) and 0.64-0.83 for the mean of the linear band onsets
# (benchmarks/JOURNAL.md).
FLUX_COMPRESSION = 15.0
FLUX_AVERAGE_S = 10.0       # flux is relative to its average over about this long
# What the tracker's phase comb listens to (`phase_strength`; chosen in benchmarks/audio/beat_cv.py)
PHASE_INPUT = "linear*snare"


def phase_strength(kind, linear, snare, log):
    """The tracker's phase input of one frame from the analyzer's fluxes: "linear", the overall
    flux of the gain-normalised magnitude (loud hits count most); "snare", its 1-5 kHz part (the
    snare and the kick's click, on the beat on every shared track, while the bass and hats often
    mark the offbeat); "linear*snare", the geometric mean of the two; "log", the tempo's 12-band
    log flux."""
    if kind == "linear":
        return linear
    if kind == "snare":
        return snare
    if kind == "linear*snare":
        return float(np.sqrt(linear * snare))
    if kind == "log":
        return log
    raise ValueError(f"unknown phase input {kind!r}")


@dataclass
class Features:
    """What the analyzer knows at the end of one block (all levels 0..1 unless said otherwise).

    time_s: stream time at the end of the block (s).  dt_s: block duration (s).
    rms, rms_smooth: loudness relative to the long-term average (0.5 = average, 0.75 = twice),
        raw and attack/release smoothed.
    band_energy, band_smooth: float32 (n_bands,), each band relative to its own long-term
        average, raw and smoothed; bands are log-spaced from low to high.
    onset_strength: overall spectral flux over the block (its max over the block's frames),
        relative to the recent peak flux.  onset: an onset was detected in the block.
    band_onset: float32 (n_bands,), the same per band.
    flux: the perceptual onset strength that motion should follow: the rise of log-compressed
        amplitudes (log1p(FLUX_COMPRESSION x amplitude / long-term RMS)) in 12 log bands, each
        counting equally, averaged over the block's frames (`_MotionFlux`'s, every half hop),
        relative to its own average over the last ~FLUX_AVERAGE_S (1 = as busy as lately, 0 =
        nothing new; >= 0, unbounded). A mean, not a max, over the frames, so the integral over
        time of a travel driven by it is the same for any block size.
    kick, snare, hats: onset strengths in 30-150 Hz, 1-5 kHz and 7-16 kHz, each relative to its
        recent peak; kick_onset, snare_onset, hats_onset: events in this block.
    tempo_bpm: current tempo in BPM, inside the preferred range (0.0 until the tracker locks).
    beat: a beat fell in this block.  beat_phase: position in the current beat at time_s, 0..1
        (0 = on the beat).  beat_confidence: 0..1, how periodic the recent onsets are at tempo_bpm.
    next_beat_s: the predicted stream time (s) of the next beat after time_s (nan until the
        tracker locks): the tracker knows it before any onset of that beat is heard.
    beat_event: the predicted beat time minus the Analyzer's `latency_s` fell in this block
        (in (time_s - dt_s, time_s]): fire a visual on it and, if latency_s is the time from
        audio to the screen or speaker, it is seen when the beat is heard. With latency_s = 0 it
        equals `beat`. At most one event per beat, even when the prediction moves.
    phase_confidence: 0..1, how clearly and steadily the recent onsets mark the predicted
        phase (0 before a lock, right after a tempo change, or while another phase leads).
    gain_db: the adaptive gain in dB, minus the long-term RMS in dBFS (a mix 30 dB quieter gets
        30 dB more).
    """

    time_s: float
    dt_s: float
    rms: float
    rms_smooth: float
    band_energy: np.ndarray
    band_smooth: np.ndarray
    onset_strength: float
    onset: bool
    band_onset: np.ndarray
    kick: float
    kick_onset: bool
    snare: float
    snare_onset: bool
    hats: float
    hats_onset: bool
    tempo_bpm: float
    beat: bool
    beat_phase: float
    beat_confidence: float
    gain_db: float
    flux: float = 0.0
    next_beat_s: float = float("nan")
    beat_event: bool = False
    phase_confidence: float = 0.0

    @property
    def beat_time_s(self):
        """Time of the most recent beat (s): time_s - beat_phase * beat period; nan with no tempo."""
        return self.time_s - self.beat_phase * 60.0 / self.tempo_bpm if self.tempo_bpm > 0 else float("nan")


def smoothing_coefficient(time_constant_s, dt_s):
    """Fraction of the way a one-pole smoother moves toward its input in dt_s seconds.

    1 - exp(-dt/tau): applying it n times with dt/n gives the same result as once with dt, which
    is what makes envelopes independent of the frame rate. tau <= 0 means "jump at once" (1.0).
    Works on scalars and arrays.
    """
    tau = np.asarray(time_constant_s, dtype=np.float64)
    return np.where(tau > 0, -np.expm1(-dt_s / np.maximum(tau, 1e-12)), 1.0)


def attack_release(previous, target, dt_s, attack_s, release_s):
    """One step of an asymmetric envelope: rise toward `target` with time constant attack_s,
    fall with release_s (seconds). Exact for a target held constant over dt_s, so two frame
    rates give the same envelope at the times they share. Scalars or arrays (elementwise)."""
    rising = target > previous
    coef = np.where(rising, smoothing_coefficient(attack_s, dt_s), smoothing_coefficient(release_s, dt_s))
    return previous + coef * (target - previous)


def band_edges(n_bands, frame_size, sample_rate, fmin_hz=40.0, fmax_hz=16000.0):
    """Bin edges of `n_bands` log-spaced bands between fmin_hz and fmax_hz of an rfft.

    Returns int array (n_bands + 1,): band i covers rfft bins [edges[i], edges[i+1]). Edges are
    geometric in frequency but at least one bin apart, so low bands (where a 1024-point frame has
    43 Hz bins) are never empty. Raises ValueError if the range has fewer bins than bands.
    """
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    bin_hz = sample_rate / frame_size
    lo = max(1, int(round(fmin_hz / bin_hz)))
    hi = min(frame_size // 2 + 1, int(round(fmax_hz / bin_hz)) + 1)
    if hi - lo < n_bands:
        raise ValueError(f"{n_bands} bands do not fit in {fmin_hz}-{fmax_hz} Hz with {frame_size}-point frames")
    edges = [lo]
    for i in range(1, n_bands + 1):
        geometric = int(round(lo * (hi / lo) ** (i / n_bands)))
        room = hi - (n_bands - i)                     # leave at least one bin per remaining band
        edges.append(min(max(edges[-1] + 1, geometric), room))
    return np.asarray(edges)


def _range_weights(lo_hz, hi_hz, frame_size, sample_rate):
    """(n_bins,) weights averaging the rfft bins in [lo_hz, hi_hz) (at least one bin)."""
    freqs = np.fft.rfftfreq(frame_size, 1.0 / sample_rate)
    w = ((freqs >= lo_hz) & (freqs < hi_hz)).astype(np.float64)
    if not w.any():
        w[np.argmin(np.abs(freqs - lo_hz))] = 1.0
    return w / w.sum()


def band_matrix(edges, n_bins):
    """(n_bins, n_bands) 0/1 matrix: column b sums the bins of band b."""
    matrix = np.zeros((n_bins, len(edges) - 1))
    for b in range(len(edges) - 1):
        matrix[edges[b]:edges[b + 1], b] = 1.0
    return matrix


def _unit(ratio):
    """Map a ratio to a long-term average (0..inf, 1 = average) into 0..1: 1 - 2**-ratio.
    0.5 = average, 0.75 = twice the average, 0.29 = half; smooth, so loud passages never clip."""
    return 1.0 - np.exp2(-ratio)


class _LongTermAverage:
    """Average power with fast rise and slow fall (seconds). It starts as the plain running mean
    of everything heard (so the first second of any level is normalised at once), and becomes an
    exponential average once the elapsed time passes each time constant."""

    def __init__(self, shape, rise_s, fall_s):
        self.value = np.zeros(shape)
        self.elapsed_s, self.rise_s, self.fall_s = 0.0, rise_s, fall_s

    def update(self, power, dt_s):
        self.elapsed_s += dt_s
        if self.elapsed_s <= dt_s:
            self.value = np.array(power, dtype=np.float64)
        else:
            rise, fall = min(self.rise_s, self.elapsed_s), min(self.fall_s, self.elapsed_s)
            self.value = attack_release(self.value, power, dt_s, rise, fall)
        return self.value


class _OnsetPicker:
    """Causal onset events on several flux signals at once.

    An event fires on the first frame whose flux is rising and above both `ratio` x its recent
    mean and `floor` x its recent peak (which falls with time constant peak_fall_s), at most once
    per `refractory_s`. Strength = flux / recent peak, 0..1: the strongest recent hit is 1. The
    peak is never taken below `min_peak`, so a nearly empty band does not blow its noise up to 1.
    """

    def __init__(self, refractory_s, floor, min_peak, ratio=2.0, mean_s=0.4, peak_fall_s=4.0):
        self.refractory_s, self.floor = np.asarray(refractory_s, float), np.asarray(floor, float)
        self.min_peak = min_peak
        n = len(self.refractory_s)
        self.mean, self.peak, self.previous = np.zeros(n), np.zeros(n), np.zeros(n)
        self.since = np.full(n, np.inf)
        self.ratio, self.mean_s, self.peak_fall_s = ratio, mean_s, peak_fall_s

    def update(self, flux, dt_s):
        self.peak = np.maximum(flux, self.peak * np.exp(-dt_s / self.peak_fall_s))
        peak = np.maximum(self.peak, self.min_peak)
        threshold = np.maximum(self.ratio * self.mean, self.floor * peak)
        event = (flux > threshold) & (flux > self.previous) & (self.since >= self.refractory_s)
        self.since = np.where(event, 0.0, self.since + dt_s)
        self.mean += smoothing_coefficient(self.mean_s, dt_s) * (flux - self.mean)
        self.previous = flux
        return np.minimum(flux / peak, 1.0), event


class _MotionFlux:
    """The flux the travelling modes move with, on frames of its own every `hop` samples.

    Why its own frames, at half the analyzer's hop: a video frame (33 ms) holds only about three
    11.6 ms hops, so which frame an onset's flux falls in hung on where the hops fell. On the 30 s
    excerpts of the 19 shared LMMS tracks (benchmarks/motion/motion_cv.py), before any picture, the
    drive's xcorr with metrics.onset_envelope went from median / worst 0.851 / 0.745 (tuning
    fold) and 0.841 / 0.547 (held out) at hop 512 to 0.889 / 0.818 and 0.891 / 0.754 at 256,
    the video frames taking the onsets nearest them (`Analyzer.flux_delay_s`); the metric's own
    flux at hop 512 follows its hop-256 envelope at only 0.596 on the densest track (200 BPM
    sixteenths), 0.773 at 256. Rendered through the CLI, every beat track then passed in both
    travelling modes (38 of 38 pairs, 36 before). A rise over two half hops (the 50 % overlap
    of the analyzer's frames, at the finer times) kept more contrast on hits but followed the
    onsets less well (0.855 / 0.735 and 0.858 / 0.656). The tempo, onsets and levels stay on
    the analyzer's frames, where the tracker was tuned. Costs four more 1024-point FFTs per
    1024-sample block (0.04-0.06 ms, benchmarks/audio/audio_accuracy.py).
    """

    def __init__(self, frame_size, hop, window, band_weights, scale):
        self.frame_size, self.hop = frame_size, hop
        self.window, self.band_weights, self.scale = window, band_weights, scale
        self.reset()

    def reset(self):
        self._buffer = np.zeros(self.frame_size - self.hop, dtype=np.float32)
        self._previous = None

    def update(self, block, gain):
        """Add a block (mono float32); returns (sum of its frames' fluxes, number of frames)."""
        buf = np.concatenate((self._buffer, block))
        n_frames = (len(buf) - (self.frame_size - self.hop)) // self.hop
        if n_frames <= 0:
            self._buffer = buf
            return 0.0, 0
        frames = np.lib.stride_tricks.sliding_window_view(buf, self.frame_size)[::self.hop][:n_frames]
        compressed = np.log1p(self.scale * gain * np.abs(np.fft.rfft(frames * self.window, axis=1)))
        before = np.concatenate((compressed[:1] if self._previous is None else self._previous, compressed[:-1]))
        self._previous = compressed[-1:]
        self._buffer = buf[n_frames * self.hop:]
        return float((np.maximum(compressed - before, 0.0) @ self.band_weights).sum()), n_frames


class Analyzer:
    """Causal block-wise audio features (see the module docstring). One instance per stream.

    Parameters
    ----------
    sample_rate : int
        Hz of the blocks given to `process`.
    n_bands : int
        Number of log-spaced bands in `band_energy` and `band_onset` (the navigator's weighted
        mode uses one per image, so any number from 1 to ~40 works). Tempo and drum onsets do
        not depend on it.
    frame_size, hop_size : int
        FFT frame and hop in samples: 1024 and 512 are 23 ms frames every 11.6 ms at 44.1 kHz,
        short enough for onsets within a block, long enough for 43 Hz bins in the bass.
    fmin_hz, fmax_hz : float
        Range split into the bands (and where the overall onset strength is measured).
    attack_s, release_s : float
        Time constants (s) of rms_smooth and band_smooth: fast rise, slow fall.
    gain_rise_s, gain_fall_s : float
        Time constants (s) of the long-term averages every level is relative to: music that gets
        louder is caught up with in a few seconds; a quieter passage (a breakdown) sinks into the
        average slowly, so it still looks quieter.
    tempo_range : (float, float)
        Preferred BPM range [lo, hi); tempi are folded into it (80-180 by default).
    latency_s : float
        How long before each predicted beat `Features.beat_event` fires (s, >= 0): the output's
        latency (audio buffer + frame + display), so that the visual lands on the beat.
    """

    def __init__(self, sample_rate=44100, n_bands=8, frame_size=1024, hop_size=512, fmin_hz=40.0,
                 fmax_hz=16000.0, attack_s=0.01, release_s=0.25, gain_rise_s=3.0, gain_fall_s=12.0,
                 tempo_range=(80.0, 180.0), latency_s=0.0):
        if not 0 < hop_size <= frame_size:
            raise ValueError(f"hop_size must be in 1..frame_size, got {hop_size}")
        if not latency_s >= 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.latency_s = float(latency_s)
        self.sample_rate, self.n_bands = int(sample_rate), int(n_bands)
        self.frame_size, self.hop_size = int(frame_size), int(hop_size)
        self.attack_s, self.release_s = attack_s, release_s
        self.gain_rise_s, self.gain_fall_s = gain_rise_s, gain_fall_s
        self.frame_dt_s = hop_size / sample_rate
        self.window = np.hanning(frame_size + 1)[:-1].astype(np.float32)
        n_bins = frame_size // 2 + 1
        edges = band_edges(n_bands, frame_size, sample_rate, fmin_hz, fmax_hz)
        self.band_sum = band_matrix(edges, n_bins) * 2.0 / self.window.sum() ** 2   # |X|^2 -> power
        band_mean = band_matrix(edges, n_bins) / np.diff(edges)
        overall = band_matrix(edges[[0, -1]], n_bins) / (edges[-1] - edges[0])
        drums = [_range_weights(lo, hi, frame_size, sample_rate) for lo, hi in (KICK_HZ, SNARE_HZ, HATS_HZ)]
        # One matrix maps the flux of every bin to: overall, kick, snare, hats, then each band.
        self.flux_weights = np.column_stack([overall, *drums, band_mean]).astype(np.float32)
        # The tempo's onset strength: 12 log bands from 40 Hz, each counting equally, so the bass
        # and kick weigh as much as the many treble bins (a plain bin mean follows the hats).
        tempo_edges = band_edges(12, frame_size, sample_rate, 40.0, min(fmax_hz, 0.45 * sample_rate))
        self.tempo_weights = (band_matrix(tempo_edges, n_bins) / np.diff(tempo_edges)).mean(axis=1)
        flux_scale = FLUX_COMPRESSION * 2.0 / self.window.sum()   # gain x |rfft| -> amplitude
        self._motion = _MotionFlux(frame_size, max(1, hop_size // 2), self.window, self.tempo_weights, flux_scale)
        self.tempo = BeatTracker(sample_rate / hop_size, tempo_range)
        self.reset()

    def reset(self):
        """Forget everything heard (a new track or device)."""
        self._buffer = np.zeros(self.frame_size - self.hop_size, dtype=np.float32)
        self._samples = 0
        self._previous_mag = self._previous_log = None
        self._motion.reset()
        self._power_avg = _LongTermAverage((), self.gain_rise_s, self.gain_fall_s)
        self._band_avg = _LongTermAverage(self.n_bands, self.gain_rise_s, self.gain_fall_s)
        n = self.n_bands
        self._onsets = _OnsetPicker([ONSET_REFRACTORY_S, *DRUM_REFRACTORY_S] + [ONSET_REFRACTORY_S] * n,
                                    [ONSET_FLOOR, *DRUM_FLOOR] + [ONSET_FLOOR] * n,
                                    MIN_ONSET_PEAK * self.window.sum() / 2)      # in |rfft| units
        self._gain = 1.0
        self._rms_smooth, self._band_smooth = 0.0, np.zeros(n)
        self._flux = 0.0
        self._flux_avg = _LongTermAverage((), FLUX_AVERAGE_S, FLUX_AVERAGE_S)
        self._levels = (0.0, np.zeros(n))          # last (rms ratio, band ratios), for tiny blocks
        self._announced_beat_s = -np.inf            # the last predicted beat a beat_event fired for
        self.tempo.reset()

    def process(self, block):
        """Analyse the next block (mono float32, any length) and return Features at its end."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        buf = np.concatenate((self._buffer, block))
        overlap = self.frame_size - self.hop_size
        n_frames = (len(buf) - overlap) // self.hop_size
        first_end = self._samples + len(block) - (len(buf) - overlap - n_frames * self.hop_size) \
            - (n_frames - 1) * self.hop_size             # stream sample where frame 0 ends
        self._samples += len(block)
        strength = np.zeros(4 + self.n_bands)
        events = np.zeros(4 + self.n_bands, dtype=bool)
        beat = False
        if n_frames:
            frames = np.lib.stride_tricks.sliding_window_view(buf, self.frame_size)[::self.hop_size][:n_frames]
            spectrum = np.abs(np.fft.rfft(frames * self.window, axis=1))
            hop_power = np.mean(np.square(frames[:, overlap:], dtype=np.float64), axis=1)
            band_power = np.square(spectrum) @ self.band_sum
            rms_power, band_ratio_power = 0.0, np.zeros(self.n_bands)
            for i in range(n_frames):
                rms_ratio, band_ratio = self._levels_of(hop_power[i], band_power[i])
                rms_power += rms_ratio ** 2
                band_ratio_power += band_ratio ** 2
                frame_strength, frame_events, frame_beat = self._onsets_of(
                    spectrum[i], (first_end + i * self.hop_size) / self.sample_rate)
                strength = np.maximum(strength, frame_strength)
                events |= frame_events
                beat |= frame_beat
            self._levels = (np.sqrt(rms_power / n_frames), np.sqrt(band_ratio_power / n_frames))
            self._buffer = buf[n_frames * self.hop_size:]
        else:
            self._buffer = buf
        flux_sum, n_flux = self._motion.update(block, self._gain)
        if n_flux:
            self._flux = self._relative_flux(flux_sum / n_flux, n_flux * self._motion.hop / self.sample_rate)
        time_s = self._samples / self.sample_rate
        tempo_bpm, phase, confidence = self.tempo.state(time_s)
        beat_event = self._beat_event(time_s, len(block) / self.sample_rate)
        rms_ratio, band_ratio = self._levels
        return Features(
            time_s=time_s, dt_s=len(block) / self.sample_rate,
            rms=float(_unit(rms_ratio)), rms_smooth=float(self._rms_smooth),
            band_energy=_unit(band_ratio).astype(np.float32), band_smooth=self._band_smooth.astype(np.float32),
            onset_strength=float(strength[0]), onset=bool(events[0]),
            band_onset=strength[4:].astype(np.float32),
            kick=float(strength[1]), kick_onset=bool(events[1]),
            snare=float(strength[2]), snare_onset=bool(events[2]),
            hats=float(strength[3]), hats_onset=bool(events[3]),
            tempo_bpm=float(tempo_bpm), beat=beat, beat_phase=phase, beat_confidence=confidence,
            gain_db=float(20 * np.log10(self._gain)), flux=self._flux,
            next_beat_s=self._next_beat_s(time_s),
            beat_event=beat_event, phase_confidence=float(self.tempo.phase_confidence),
        )

    @property
    def flux_delay_s(self):
        """How long after an onset `flux` counts it (s): the log rise of a sharp onset peaks in
        the frame whose window ends a quarter frame plus half a hop after it (the time
        metrics.spectral_flux credits a flux to, measured there within +-3 ms on drums)."""
        return (self.frame_size / 4 + self._motion.hop / 2) / self.sample_rate

    def _next_beat_s(self, time_s):
        """The tracker's predicted next beat after time_s (a block may end up to a hop after the
        last frame the tracker saw); nan without a tempo."""
        if self.tempo.period_s <= 0:
            return float("nan")
        beat_s = self.tempo.next_beat_s
        while beat_s <= time_s:
            beat_s += self.tempo.period_s
        return float(beat_s)

    def _beat_event(self, time_s, dt_s):
        """True if a predicted beat minus latency_s falls in this block and has not fired yet.

        The candidates are the beat the tracker emitted last and its predicted ones. A beat less
        than half a period after the last one announced is the same beat, moved by a phase nudge;
        one that was due more than a block before this one (a first lock on a past beat, a
        re-phase) is skipped: a visual that late would be off the beat."""
        period = self.tempo.period_s
        if period <= 0:
            return False
        candidates = [self.tempo.last_beat_s]
        while candidates[-1] - self.latency_s <= time_s:
            candidates.append(self.tempo.next_beat_s + (len(candidates) - 1) * period)
        fired = False
        for beat_s in candidates[:-1]:
            due_s = beat_s - self.latency_s
            if beat_s > self._announced_beat_s + 0.5 * period and time_s - 2 * dt_s < due_s <= time_s:
                self._announced_beat_s, fired = beat_s, True
        return fired

    def _relative_flux(self, flux, dt_s):
        """The block's mean flux relative to its long-term average (silence leaves the average
        alone, so the first hits after a pause are not blown up against a near-zero average)."""
        if flux > 0:
            self._flux_avg.update(flux, dt_s)
        return float(flux / self._flux_avg.value) if self._flux_avg.value > 0 else 0.0

    def _levels_of(self, hop_power, band_power):
        """Update the gain and the smoothed levels with one frame; returns (rms ratio, band ratios)
        to the long-term averages. Digital silence (< -100 dBFS) leaves the averages alone."""
        dt = self.frame_dt_s
        if hop_power > 1e-10:
            self._power_avg.update(hop_power, dt)
            self._band_avg.update(band_power, dt)
        avg = max(float(self._power_avg.value), 1e-10)
        self._gain = 1.0 / np.sqrt(avg)
        rms_ratio = np.sqrt(hop_power) * self._gain
        # a band's average is floored at 1e-6 of the total, so an empty band stays near 0
        band_ratio = np.sqrt(band_power / np.maximum(self._band_avg.value, 1e-6 * avg))
        self._rms_smooth = attack_release(self._rms_smooth, _unit(rms_ratio), dt, self.attack_s, self.release_s)
        self._band_smooth = attack_release(self._band_smooth, _unit(band_ratio), dt, self.attack_s, self.release_s)
        return rms_ratio, band_ratio

    def _onsets_of(self, magnitude, frame_end_s):
        """Flux of one frame's magnitude spectrum -> (strengths, events, beat?).

        Onsets use the rise of the gain-normalised magnitude (a loud hit scores higher than a
        quiet one); the tempo uses the rise of its log (every onset counts, loud or not), credited
        one hop before the frame's end, where the flux of an onset peaks.
        """
        mag = self._gain * magnitude
        log_mag = np.log1p(10.0 * mag)
        if self._previous_mag is None:
            self._previous_mag, self._previous_log = mag, log_mag
        flux = np.maximum(mag - self._previous_mag, 0.0) @ self.flux_weights
        tempo_flux = float(np.maximum(log_mag - self._previous_log, 0.0) @ self.tempo_weights)
        self._previous_mag, self._previous_log = mag, log_mag
        strength, events = self._onsets.update(flux, self.frame_dt_s)
        phase_flux = phase_strength(PHASE_INPUT, float(flux[0]), float(flux[2]), tempo_flux)
        beat = self.tempo.update(tempo_flux, frame_end_s, self.frame_dt_s, phase_flux)
        return strength, events, beat


def analyze(samples, sample_rate=44100, block_size=1024, **analyzer_options):
    """Run the causal analyzer over a whole signal, block by block exactly as live input would be.

    Parameters
    ----------
    samples : (n,) float array, mono.
    sample_rate : int, Hz.
    block_size : int
        Samples per `Analyzer.process` call; the last block is zero-padded.
    analyzer_options
        Passed to `Analyzer` (n_bands, tempo_range, ...).

    Returns
    -------
    dict with tempo_bpm (the confidence-weighted median of the tempo over every block after the
    lock: the estimate the tracker held most confidently, robust to a wrong first lock; 0.0 if it
    never locked), beats (the times, s, of the beats the tracker emitted), onsets (times, s, of
    the ends of the blocks with an overall onset event: when a live show would have seen them),
    duration (s) and phase_confidence (the mean of `Features.phase_confidence` over the blocks
    after the lock, 0..1: how much of the track the predicted phase was clearly marked; 0.0 if
    it never locked).
    """
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    analyzer = Analyzer(sample_rate, **analyzer_options)
    beats, onsets, tempi, confidences, phase_confidences = [], [], [], [], []
    for start in range(0, len(samples), block_size):
        block = samples[start:start + block_size]
        features = analyzer.process(np.pad(block, (0, block_size - len(block))))
        if features.beat:
            beats.append(round(features.beat_time_s, 4))
        if features.onset:
            onsets.append(round(features.time_s, 4))
        if features.tempo_bpm > 0:
            tempi.append(features.tempo_bpm)
            confidences.append(features.beat_confidence)
            phase_confidences.append(features.phase_confidence)
    return {"tempo_bpm": round(_weighted_median(tempi, confidences), 2), "beats": beats, "onsets": onsets,
            "duration": round(len(samples) / sample_rate, 4),
            "phase_confidence": round(float(np.mean(phase_confidences)), 3) if phase_confidences else 0.0}


def _weighted_median(values, weights):
    """Median of `values` weighted by `weights` (0.0 for no values; plain median if all weights are 0)."""
    if not values:
        return 0.0
    values, weights = np.asarray(values, float), np.asarray(weights, float)
    if weights.sum() <= 0:
        return float(np.median(values))
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
