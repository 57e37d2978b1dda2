"""Work done off the frame loop, tied to the state it was made for.

A live show changes its state (the image set, the generation size) while work for an earlier
state is still running in the background: an image set loading, the images re-encoded for a new
size, a scene being written to its file. Each job carries a `key`, the state it was made for;
the loop takes finished jobs once a frame, in its own thread, and applies a result only while its
key still matches the show (else it drops it, or starts the work again for the state as it is
now). Issue 25's crash was a re-encode made for a 12-image set that arrived after a scene had
switched to 8 images.

Every thread started here is joined by `close()`, on every way out of the show: ONNX Runtime
aborts the whole process ("terminate called without an active exception", SIGABRT) when one of
its sessions is still running while the interpreter exits.
"""

import logging
import threading
from typing import Any, NamedTuple

log = logging.getLogger(__name__)


class Done(NamedTuple):
    """A finished job: its kind ("images", "size", "save"), the key it was started with, and
    its result, or the exception it raised (`error`, None when it succeeded)."""
    kind: str
    key: Any
    result: Any = None
    error: BaseException = None


class Background:
    """Threads for the loop's slow work; finished jobs wait in `take()` for the loop's thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = {}          # thread -> kind
        self._done = []
        self._closed = False

    def start(self, kind, key, work, *args):
        """Run work(*args) in a thread of its own; False (and nothing started) once closed."""
        with self._lock:
            if self._closed:
                return False
            thread = threading.Thread(target=self._run, args=(kind, key, work, args),
                                      name=f"flowvj-{kind}", daemon=True)
            self._running[thread] = kind
        thread.start()
        return True

    def _run(self, kind, key, work, args):
        try:
            done = Done(kind, key, work(*args))
        except BaseException as error:  # noqa: BLE001 - handed to the loop, which reports it
            done = Done(kind, key, error=error)
        with self._lock:
            self._done.append(done)
            self._running.pop(threading.current_thread(), None)

    @property
    def closed(self):
        return self._closed

    def busy(self, kind):
        """Whether a job of this kind is still running."""
        with self._lock:
            return kind in self._running.values()

    def take(self):
        """The jobs finished since the last call, oldest first."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def close(self, timeout_s=60.0):
        """Start nothing more and wait for the running jobs (each up to timeout_s)."""
        with self._lock:
            self._closed = True
            threads = list(self._running)
        for thread in threads:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("live: background job %s still running at exit", thread.name)
