"""The browser view: frames to a full-screen page over a WebSocket, controls back from it.

    with WebOutput(port=8765, image_sets=["demo", "faces"]) as web:
        print("open", web.url)
        while playing:
            for name, value in web.pending_controls():   # applied in the engine's own loop
                apply(name, value)
            web.show(frame, {"fps": 30.0, "tempo_bpm": 124.0, "levels": [0.8, 0.3, 0.1]})

Threads: aiohttp runs in a thread of its own with its own event loop, because the engine's loop is
synchronous and must never wait on the network. `show` only swaps a reference under a lock and
wakes the server ("latest wins": frames are never queued, so a slow client gets fewer frames, not
older ones); it never blocks. Controls from the page are validated in the server thread, then
appended to a lock-protected list that `pending_controls()` drains, and also passed to
`on_control(name, value)` if given; that callback runs in the *server* thread, so it must be quick
and thread-safe (the engine should prefer `pending_controls()`).

Protocol (one WebSocket at GET /ws; the page is GET /):
  server -> page, binary: a frame, header uint16 LE width, uint16 LE height, then width*height*3
      bytes of RGB rows top to bottom (3,076 bytes for 32x32; no image encoding).
  server -> page, text JSON {"type": "state", "controls": {name: value}, "image_sets": [...]}:
      on connect and after any accepted control change (so every open page shows the same values).
  server -> page, text JSON {"type": "meters", "meters": {...}}: the latest meters passed to show,
      at most every METERS_INTERVAL_S per client.
  page -> server, text JSON {"control": name, "value": v}: names and ranges in CONTROL_RANGES and
      MODES; anything else is logged and ignored.
Outputs never import the model or the navigator: the mode names are repeated here.
"""

import asyncio
import errno
import json
import logging
import math
import struct
import threading
import time
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from ...errors import UserError

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MODES = ("weighted", "magellan", "explore")  # navigate.MODES, repeated: outputs import nothing upstream
CONTROL_RANGES = {  # numeric controls: (min, max), inclusive; the page's sliders use the same ranges
    "temperature": (0.01, 2.0),
    "speed": (0.0, 4.0),
    "sensitivity": (0.0, 4.0),
}
METERS_INTERVAL_S = 0.1  # meters to each client at most ~10 times a second
START_TIMEOUT_S = 10.0


class WebOutput:
    """An HTTP + WebSocket server showing frames in browsers and taking controls from them.

    host, port : where to listen; port 0 picks a free port (see `url` after start()).
    on_control : optional callable(name, value), called from the server thread for each valid
        control change (keep it quick; it must not touch engine state without a lock).
    image_sets : names offered in the page's image-set select; a control picking another name is
        rejected.
    controls : initial values shown by the page, e.g. {"mode": "weighted", "temperature": 0.1}.
    """

    def __init__(self, host="127.0.0.1", port=8765, on_control=None, image_sets=(), controls=None):
        self.host, self.port = host, int(port)
        self.on_control = on_control
        self.image_sets = [str(name) for name in image_sets]
        self.controls = {"mode": MODES[0], "temperature": 0.1, "speed": 1.0, "sensitivity": 1.0}
        if self.image_sets:
            self.controls["image_set"] = self.image_sets[0]
        self.controls.update(controls or {})
        self._lock = threading.Lock()
        self._frame = None      # latest frame message (bytes), replaced by show()
        self._frame_seq = 0     # bumped by show(); clients compare with what they last sent
        self._meters = None     # latest meters (JSON text)
        self._meters_seq = 0
        self._state_seq = 0     # bumped (server thread) when a control changes: pages get the state
        self._pending = []      # (name, value) accepted from pages, drained by pending_controls()
        self._wake_scheduled = False
        self._loop = self._thread = self._runner = None
        self._clients = {}      # ws -> asyncio.Event, set when there is something new to send
        self.frames_sent = 0    # frame messages written to sockets, all clients together

    # -- the engine's side (any thread) -------------------------------------------------------

    @property
    def url(self):
        """http://host:port/ (the actual port once started with port 0)."""
        return f"http://{self.host}:{self.port}/"

    def show(self, frame, meters=None):
        """Hand the latest frame (uint8 (h, w, 3) RGB) and meters (a JSON-able dict) to the server.

        Returns at once: the frame is copied into a message and replaces any frame not yet sent.
        """
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"show expects a uint8 (h, w, 3) frame, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if not (0 < width < 65536 and 0 < height < 65536):
            raise ValueError(f"show expects a frame of 1..65535 pixels a side, got {width}x{height}")
        message = struct.pack("<HH", width, height) + np.ascontiguousarray(frame).tobytes()
        meters_text = None
        if meters is not None:
            meters_text = json.dumps({"type": "meters", "meters": meters}, default=_jsonable)
        with self._lock:
            self._frame = message
            self._frame_seq += 1
            if meters_text is not None:
                self._meters = meters_text
                self._meters_seq += 1
            loop = self._loop if not self._wake_scheduled else None
            self._wake_scheduled = self._wake_scheduled or loop is not None
        if loop is not None:  # one wake-up in flight at a time: 1,000 shows queue no 1,000 callbacks
            try:
                loop.call_soon_threadsafe(self._wake_clients)
            except RuntimeError:  # the loop closed under us (close() in another thread)
                pass

    def pending_controls(self):
        """The valid control changes received since the last call, oldest first: [(name, value)]."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self):
        """Start the server thread; returns once it listens. A port in use is a UserError."""
        if self._thread is not None:
            return self
        self._wake_scheduled = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flowvj-web", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(START_TIMEOUT_S)
        except TimeoutError:  # (an OSError since 3.11) a bug, not the user's port
            self.close()
            raise
        except OSError as error:
            self.close()
            if error.errno == errno.EADDRINUSE or "address already in use" in str(error).lower():
                raise UserError(f"--port {self.port}: {self.host}:{self.port} is already in use; "
                                "expected a free port (or 0 to pick one)") from None
            raise UserError(f"--host {self.host} --port {self.port}: cannot listen on {self.host}:{self.port} "
                            f"({error.strerror or error})") from None
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Close every socket, stop the server and its thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if self._runner is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(START_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - closing must not raise over the show's own error
                log.exception("web output: error while shutting down")
        with self._lock:
            self._loop = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        loop.close()
        self._thread = self._runner = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- the server thread --------------------------------------------------------------------

    async def _serve(self):
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", STATIC)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        if self.port == 0:
            self.port = self._runner.addresses[0][1]  # the port the system picked

    async def _shutdown(self):
        for ws in list(self._clients):
            await ws.close()
        await self._runner.cleanup()

    async def _index(self, request):
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def _wake_clients(self):
        with self._lock:
            self._wake_scheduled = False
        for event in self._clients.values():
            event.set()

    async def _websocket(self, request):
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        wake = asyncio.Event()
        wake.set()  # the state, and the latest frame if there is one
        self._clients[ws] = wake
        sender = asyncio.create_task(self._send_loop(ws, wake))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._receive(message.data)
                elif message.type == WSMsgType.BINARY:
                    log.warning("web output: ignored a binary message from a page")
        finally:
            del self._clients[ws]
            sender.cancel()
        return ws

    async def _send_loop(self, ws, wake):
        """Send this client the latest frame whenever there is a newer one, and the meters when
        newer and at least METERS_INTERVAL_S after the last; a slow client simply skips frames."""
        frame_seq = meters_seq = 0
        state_seq = -1
        meters_due = 0.0
        try:
            while not ws.closed:
                await wake.wait()
                wake.clear()
                with self._lock:
                    frame, new_frame_seq = self._frame, self._frame_seq
                    meters, new_meters_seq = self._meters, self._meters_seq
                if state_seq != self._state_seq:
                    state_seq = self._state_seq
                    await ws.send_str(self._state_message())
                if new_frame_seq != frame_seq and frame is not None:
                    frame_seq = new_frame_seq
                    await ws.send_bytes(frame)
                    self.frames_sent += 1
                now = time.monotonic()
                if new_meters_seq != meters_seq and now >= meters_due:
                    meters_seq, meters_due = new_meters_seq, now + METERS_INTERVAL_S
                    await ws.send_str(meters)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass  # the page went away; its handler cleans up

    def _receive(self, text):
        try:
            name, value = self._validate(json.loads(text))
        except (ValueError, TypeError, KeyError) as error:
            log.warning("web output: ignored control message %.200r: %s", text, error)
            return
        with self._lock:
            self._pending.append((name, value))
        self.controls[name] = value
        if self.on_control is not None:
            try:
                self.on_control(name, value)
            except Exception:  # noqa: BLE001 - a bad callback must not take the server down
                log.exception("web output: on_control(%r, %r) failed", name, value)
        self._state_seq += 1  # every page shows the new value (sent by each page's send loop)
        for event in self._clients.values():
            event.set()

    def _validate(self, message):
        """{"control": name, "value": v} -> (name, value) with value checked and typed; else raises."""
        if not isinstance(message, dict) or set(message) != {"control", "value"}:
            raise ValueError('expected {"control": name, "value": v}')
        name, value = message["control"], message["value"]
        if name == "mode":
            if value not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}")
            return name, value
        if name == "image_set":
            if not isinstance(value, str) or value not in self.image_sets:
                raise ValueError(f"image_set must be one of {self.image_sets}")
            return name, value
        if name in CONTROL_RANGES:
            low, high = CONTROL_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number")
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}]")
            return name, float(value)
        raise ValueError(f"unknown control {name!r}")

    def _state_message(self):
        return json.dumps({"type": "state", "controls": self.controls, "image_sets": self.image_sets,
                           "modes": list(MODES), "ranges": CONTROL_RANGES}, default=_jsonable)


def _jsonable(value):
    """numpy scalars and arrays in meters -> plain numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
