"""The DJ's clock: tempo and beats from the DJ's gear instead of the audio tracker's guess.

A clock is any object with `state(now_s)` (now_s = time.perf_counter()) returning None while it
is absent, else (tempo_bpm, beat_position); LiveLoop puts it in charge of the tempo, the beats
and the bar lines its quantised changes wait for. Two kinds:

`MidiClock`: MIDI clock in (24 ticks a beat, start / stop / continue, song position) on a MIDI
port. Tempo and phase come from a straight line fitted through the last two beats of ticks
(tick index against arrival time): a tick arrives late by up to one audio period of the MIDI
system (JACK hands events over once a period, ~6 ms at 256 frames) and a USB controller jitters
too, so one tick's interval is a poor tempo, while the fit over 48 of them averages the jitter
out and has no lag at a steady tempo.

`LinkClock`: Ableton Link (aalink, GPL-3) with its session's tempo and beat at the quantum,
while the session has peers.

Both take `latency_s`, the time from a frame being drawn to the audience seeing it, and report
the beat at now_s + latency_s: the frame then shows the beat the audience hears as it appears.
"""

import asyncio
import collections
import threading
import time
import warnings

from ..errors import UserError

TICKS_PER_BEAT = 24
FIT_TICKS = 2 * TICKS_PER_BEAT      # the tempo and phase fit: the last two beats of ticks
MIN_TICKS = 6                       # a quarter beat before a tempo is reported at all


def fit_ticks(ticks):
    """Least-squares line through (time_s, tick_index) pairs -> (ticks per second, the tick
    index at the last tick's time). Times are taken relative to the last one, so perf_counter's
    large values lose no precision."""
    t_last = ticks[-1][0]
    n = len(ticks)
    mean_t = sum(t - t_last for t, _ in ticks) / n
    mean_k = sum(k for _, k in ticks) / n
    var = sum((t - t_last - mean_t) ** 2 for t, _ in ticks)
    if var <= 0.0:
        return None
    slope = sum((t - t_last - mean_t) * (k - mean_k) for t, k in ticks) / var
    return slope, mean_k - slope * mean_t


class MidiClock:
    """MIDI clock in: feed(message, arrival_s) with every message (MidiClock.open does, from a
    port), state(now_s) in the frame loop.

    The beat position counts from Start (its first tick is beat 0), from the song position on
    Continue (Song Position Pointer: in sixteenths, six ticks each), or from the first tick when
    the clock runs without a Start (mixers that send clock all the time). After Stop, or when no
    tick came for `timeout_s`, the clock is absent (None) and the audio tracker takes over."""

    def __init__(self, latency_s=0.0, timeout_s=1.0):
        self.latency_s, self.timeout_s = float(latency_s), float(timeout_s)
        self._ticks = collections.deque(maxlen=FIT_TICKS)   # (arrival_s, tick index)
        self._next_tick = 0
        self._running = True        # until a Stop: a clock with no Start still counts
        self._lock = threading.Lock()
        self._port = None
        self.name = None

    @classmethod
    def open(cls, port, latency_s=0.0, flag="--midi-clock", **options):
        """A MidiClock fed by the MIDI input port `port` names (part of a name)."""
        from .midi_ports import MidiPort

        clock = cls(latency_s=latency_s, **options)
        clock._port = MidiPort(port, clock.feed, flag, timing=True)
        clock.name = clock._port.name
        return clock

    def feed(self, message, arrival_s):
        """One mido message that arrived at arrival_s (perf_counter seconds; MidiPort stamps
        it with the time rtmidi received it, so the GIL's delays do not jitter the ticks)."""
        kind = message.type
        with self._lock:
            if kind == "clock":
                if self._running:
                    self._ticks.append((arrival_s, self._next_tick))
                    self._next_tick += 1
            elif kind == "start":
                self._running, self._next_tick = True, 0
                self._ticks.clear()
            elif kind == "continue":
                self._running = True
                self._ticks.clear()     # the pause broke the line; the count goes on
            elif kind == "stop":
                self._running = False
            elif kind == "songpos":
                self._next_tick = message.pos * TICKS_PER_BEAT // 4
                self._ticks.clear()

    def state(self, now_s):
        """(tempo_bpm, beat_position at now_s + latency_s), or None while stopped or silent."""
        with self._lock:
            ticks = list(self._ticks) if self._running else []
        if len(ticks) < MIN_TICKS or now_s - ticks[-1][0] > self.timeout_s:
            return None
        fit = fit_ticks(ticks)
        if fit is None:
            return None
        per_s, at_last = fit
        position = (at_last + per_s * (now_s + self.latency_s - ticks[-1][0])) / TICKS_PER_BEAT
        return per_s * 60.0 / TICKS_PER_BEAT, position

    def close(self):
        if self._port is not None:
            self._port.close()


class LinkClock:
    """Ableton Link: while the session has peers (a DJ app, another VJ), its tempo and its beat
    at `quantum` (beats per bar: the phase all peers share) drive the show; alone, None.

    Link keeps the timeline of the session that was there first: start the DJ's Link at least
    a second before flowvj (Link takes sessions begun within 0.5 s of each other as a tie and
    keeps the one with the lower random id), or flowvj's own `bpm` becomes the session's tempo
    until someone changes it. aalink wants an asyncio loop; it gets one in a thread of its own
    (its callbacks are not used)."""

    def __init__(self, quantum=4.0, latency_s=0.0, bpm=120.0):
        try:
            import aalink
        except ImportError as error:
            raise UserError(f"--link needs aalink (pip install aalink==0.2.3): {error}") from None
        self.quantum, self.latency_s = float(quantum), float(latency_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flowvj-link", daemon=True)
        self._thread.start()

        async def make():
            link = aalink.Link(float(bpm))
            link.quantum = self.quantum
            link.enabled = True
            return link

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._link = asyncio.run_coroutine_threadsafe(make(), self._loop).result(10)

    @property
    def peers(self):
        return self._link.num_peers

    def state(self, now_s):
        """(session tempo, beat at now_s + latency_s at the quantum), or None with no peers.
        Link's beat is read for its own now: the read's midpoint on perf_counter stands for it."""
        link = self._link
        if link is None or link.num_peers == 0:
            return None
        before = time.perf_counter()
        beat, tempo = link.beat, link.tempo
        read_s = (before + time.perf_counter()) / 2
        return tempo, beat + (now_s + self.latency_s - read_s) * tempo / 60.0

    def close(self):
        link, self._link = self._link, None
        if link is None:
            return

        async def stop():
            link.enabled = False

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        del link                # Link's threads stop in its destructor
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class FirstClock:
    """Several clocks, the first present one in charge (Link, then MIDI clock)."""

    def __init__(self, clocks):
        self.clocks = list(clocks)

    def state(self, now_s):
        for clock in self.clocks:
            state = clock.state(now_s)
            if state is not None:
                return state
        return None

    def close(self):
        for clock in self.clocks:
            clock.close()
