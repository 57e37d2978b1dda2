"""The one place controls enter a live show.

Every producer (the window's keys, the browser page, and any later input: OSC, MIDI, Link, a
scene recall) posts `ControlEvent`s here from whatever thread it runs in; the engine drains the
bus once per frame in its own thread and applies each event. So a new input is a new producer,
not a new branch in the frame loop, and no engine state is touched from another thread.

The bus is bounded: a producer that floods it (a stuck controller sending thousands of CCs a
second) loses its oldest events, never the show's memory or frame rate; `dropped` counts them.
"""

import collections
import threading
import time
from typing import Any, NamedTuple


class ControlEvent(NamedTuple):
    """One control change: `name` (e.g. "mode", "speed", "next_image"), its `value` (None for
    actions), where it came from (`source`: "key", "page", "osc", ...) and when (monotonic s)."""
    name: str
    value: Any = None
    source: str = ""
    time_s: float = 0.0


class ControlBus:
    """A thread-safe, bounded FIFO of ControlEvents: `post` from any thread, `drain` from one."""

    def __init__(self, capacity=1024):
        self._events = collections.deque(maxlen=int(capacity))
        self._lock = threading.Lock()
        self.posted = self.dropped = 0

    def post(self, name, value=None, source=""):
        """Queue one event; the oldest is dropped (and counted) when the bus is full."""
        event = ControlEvent(str(name), value, str(source), time.monotonic())
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(event)
            self.posted += 1

    def drain(self):
        """Every event posted since the last drain, oldest first."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events
