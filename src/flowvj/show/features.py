"""The features stage: an audio block -> the Features the navigator sees, analysed once a frame.

Three steps, in this order: the analyzer (audio/analyzer.py) hears the block; a DJ clock (Ableton
Link, MIDI clock: control/clock.py), while it has a tempo, replaces the tempo and beats heard
(the beat fires when its position crosses a whole beat); the sensitivity gain scales the levels.
The live loop and the Show only take the result: nothing downstream analyses again or edits it.
"""

import dataclasses
import math

# the levels the sensitivity gain scales (the tempo, phase and beat flags are not levels)
LEVELS = ("rms", "rms_smooth", "band_energy", "band_smooth", "onset_strength", "kick", "snare", "hats", "flux")


class FeatureStage:
    """Features for each live frame. `clock` (optional) has `state(now_s)`: None while absent,
    else (tempo_bpm, beat_position); with `quantum` (beats per bar) `bar_line` says whether a bar
    line passed this frame. `sensitivity` is the gain on LEVELS (1 = as heard)."""

    def __init__(self, clock=None, quantum=None):
        self.clock, self.quantum = clock, (float(quantum) if quantum else None)
        self.sensitivity = 1.0
        self.heard = None           # the last Features before the gain (kept when no audio came)
        self.clock_beat = None      # the clock's beat position at the last frame, None without one
        self.bar_line = False

    def process(self, analyzer, block, now_s):
        """The frame's Features: `block` (the audio heard since the last frame, maybe empty)
        analysed by `analyzer`, clocked, then gained."""
        if len(block) or self.heard is None:
            self.heard = analyzer.process(block)
        self.heard, self.bar_line = self._clocked(self.heard, now_s)
        if self.sensitivity == 1.0:
            return self.heard
        return dataclasses.replace(self.heard, **{name: getattr(self.heard, name) * self.sensitivity
                                                  for name in LEVELS})

    def _clocked(self, features, now_s):
        state = self.clock.state(now_s) if self.clock is not None else None
        if state is None:
            self.clock_beat = None
            return features, False
        tempo_bpm, position = state
        previous, self.clock_beat = self.clock_beat, position
        beat = previous is not None and math.floor(position) > math.floor(previous)
        bar = (previous is not None and self.quantum is not None
               and math.floor(position / self.quantum) > math.floor(previous / self.quantum))
        changes = {"tempo_bpm": float(tempo_bpm), "beat": beat, "beat_phase": position % 1.0}
        if hasattr(features, "beat_event"):
            changes["beat_event"] = beat
        return dataclasses.replace(features, **changes), bar
