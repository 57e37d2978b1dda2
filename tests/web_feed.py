"""A thread that plays the engine for a web test: shows the page a frame ~30 times a second."""

import contextlib
import threading


@contextlib.contextmanager
def feeding(web, frame, meters=None):
    """While inside, `web.show(frame, meters)` about 30 times a second from a thread of its own
    (the engine's side of WebOutput); stopped and joined on the way out."""
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            web.show(frame, meters if meters is not None else {"fps": 30.0})
            stop.wait(1 / 30)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield web
    finally:
        stop.set()
        feeder.join()
