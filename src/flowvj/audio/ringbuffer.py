"""A "latest wins" ring buffer between a live audio callback and the analyzer.

The writer (a PortAudio callback thread) appends blocks as they arrive; the reader (the engine's
frame loop) asks for the most recent n samples. Nothing is queued: when the reader is slow it
skips what it missed instead of falling behind, so the lag between what is heard and what is
drawn can never grow. When the writer is faster than the capacity, the oldest audio is
overwritten.

The buffer also counts every sample ever written, which gives the reader the audio time of the
newest sample (count / rate) without a clock of its own.
"""

import threading

import numpy as np


class RingBuffer:
    """Fixed-capacity mono float32 ring; `write` from one thread, `read_latest` from any."""

    def __init__(self, capacity):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0  # samples written since creation; the newest sample is _written - 1
        self._lock = threading.Lock()  # held for a memcpy at most: safe in an audio callback

    @property
    def written(self):
        """Samples written since creation (including overwritten ones)."""
        return self._written

    def write(self, samples):
        """Append samples (1-D); if more than the capacity arrive at once, only the last are kept."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._append(samples[-self.capacity:], len(samples))

    def write_silence(self, count):
        """Append `count` zeros: the source keeps its clock running while a device is missing."""
        count = max(int(count), 0)
        self._append(np.zeros(min(count, self.capacity), dtype=np.float32), count)

    def _append(self, kept, count):
        """Store `kept` (the last len(kept) of `count` new samples) and advance the count."""
        with self._lock:
            total = self._written + count
            start = (total - len(kept)) % self.capacity
            first = min(len(kept), self.capacity - start)
            self._data[start:start + first] = kept[:first]
            self._data[:len(kept) - first] = kept[first:]
            self._written = total

    def clear(self):
        """Zero the stored audio (the count goes on), so stale audio is never read again."""
        with self._lock:
            self._data[:] = 0.0

    def read_latest(self, n):
        """(the newest n samples, oldest first, zero-padded in front if fewer were ever written;
        total samples written, i.e. the index just past the newest one)."""
        n = int(n)
        if not 0 <= n <= self.capacity:
            raise ValueError(f"n must be in 0..{self.capacity}, got {n}")  # 0: just the clock
        with self._lock:
            end = self._written
            start = end - n
            indices = np.arange(start, end) % self.capacity
            out = self._data[indices]
        if start < 0:
            out[:-start] = 0.0
        return out, end
