"""The browser view: frames to a full-screen page over a WebSocket, controls back from it.

    with WebOutput(port=8765, image_sets=["demo", "faces"]) as web:
        for url in web.urls:
            print("open", url, "in a browser")
        while playing:
            for name, value in web.pending_controls():   # applied in the engine's own loop
                apply(name, value)
            web.update_controls({"mode": mode})          # after a change from any source
            web.show(frame, meters)

Threads: aiohttp runs in a thread of its own with its own event loop, because the engine's loop is
synchronous and must never wait on the network. `show` only copies the frame and swaps a reference
under a lock ("latest wins": frames are never queued, so a slow client gets fewer frames, not older
ones); the server thread looks for a newer frame every FRAME_POLL_S and sends it; any encoding
happens there, once per frame for all clients. `show` does not wake the server itself: a wake-up
from the engine's thread (a byte on the loop's self-pipe) hands the GIL to the server thread, and
with Chromium on the same two cores the engine then waited 7-12 ms for it back in 9 % of frames
at 192x108 and 30 fps (`_wake` in show took 7.3 ms median in those), which made most of the
browser path's intervals over 40 ms; polling costs the page ~1 ms of delay on average.
Controls from the page are validated in the server thread, then appended to a lock-protected list
that `pending_controls()` drains, and also passed to `on_control(name, value)` if given; that
callback runs in the *server* thread, so it must be quick and thread-safe (the engine should
prefer `pending_controls()`). `update_controls` (any thread) changes the values the
pages show; every page then gets the new state.

Access (access.py says why): every route (page, static files, WebSocket) needs a Host that names
this server and, when an Origin is sent, the page's own origin; bound beyond loopback the WebSocket
also needs the random token of `urls` (/#token=... in the page's URL, which the page passes on as
/ws?token=...). Otherwise: 403 with a one-line reason. Every response carries access.HEADERS (no
framing, no type sniffing). Limits (limits.py): a page that sends a message over MAX_MESSAGE_BYTES
is dropped (close 1009), one over MESSAGES_PER_S sustained too (close 1008); the show goes on.
Connections: at most MAX_CONNECTIONS_PER_ADDRESS open from one address, each closed after
IDLE_TIMEOUT_S without a whole request. Bad messages, refused requests and connections, and
aiohttp's own errors are logged once, then summed up in at most one line per BAD_LOG_INTERVAL_S.

Protocol (one WebSocket at GET /ws; the page is GET /):
  server -> page, binary: a frame, header uint16 LE width, uint16 LE height, uint8 encoding, then
      encoding 0: width*height*3 bytes of RGB rows top to bottom (3,072 bytes for 32x32);
      encoding 1: a JPEG of the frame (quality JPEG_QUALITY; full chroma up to
      FULL_CHROMA_MAX_PIXELS, 4:2:0 above, as the recording and every video has).
      The frames are the compositor's, at the show's --size (1280x720 by default). Pages on other
      machines get 1 for frames over RAW_MAX_PIXELS; pages on loopback get 0 up to
      LOOPBACK_RAW_MAX_PIXELS (320x180) and 1 above. Why JPEG on loopback too: a raw 720p frame
      is 2.76 MB, and the page's own work on it (the RGB -> RGBA loop in JavaScript,
      putImageData) is what limits it: measured on the 2-core VM under load
      (benchmarks/outputs/page_encoding.py), raw 720p at 30 fps drew 3.5-4.6 fps in the page for
      50-65 % of a core of Chromium; JPEG 4:2:0 drew 22.5 fps for 59 % of a core of Chromium
      plus 16 % in the server thread (PIL's libjpeg-turbo, ~9 ms a 720p frame, the GIL released
      while it encodes), once per frame for every page; full chroma drew 19.8 fps for 50 % + 19 %.
  server -> page, text JSON {"type": "state", "controls": {name: value}, "image_sets": [...],
      "modes": [...], "ranges": {...}}: on connect and after any control change.
  server -> page, text JSON {"type": "meters", "meters": {...}}: the latest meters passed to show,
      at most every METERS_INTERVAL_S per client. The engine's meters: fps, frame_ms, tempo_bpm
      (null or 0 until the tempo locks), rms, bands (list, ~0..1), gen_size ("WxH", the size the
      flow draws at), mode, notice ("" when none), notice_id (bumped for each new notice).
  page -> server, text JSON {"control": name, "value": v}: names and ranges in CONTROL_RANGES and
      MODES; anything else is ignored (and counted in the log). With `scenes` (a list, the
      --scenes file's names): "scene" (one of them) and "save_scene" (a new or existing name,
      1..SCENE_NAME_MAX printable characters); the state then carries "scenes", and a scene the
      engine saved joins the list (control_applied). Also blackout and freeze (0 or 1, the state
      asked for), next_image and next_mode (value null, each applied once), brightness (0..1),
      detail (0..2, the compositor's amount), midi_learn (a control's name or name=value, ""
      disarms; the state's "midi_learn" is what the show says is armed, null until it has said).

The audience (audience=...: `flowvj serve --audience`; audience.py says what holds a room): phones
open GET /audience (audience.html) from the QR code of `audience_urls`, which carries a token of
their own (/audience#token=...), and cast ballots on GET /audience/ws; that socket needs the
audience token, the VJ's /ws refuses it, and no message on it reaches a control. VJ pages get
{"type": "audience", "urls": [...], "qr": an SVG data: URI} on connect and {"type": "tally",
"voters", "image", "set", "mood", "scene", "on", "accepted", "refused", "control_attempts"} when it
changes; the engine gets ("audience_bias", {"image_set", "images", "mood", "scene"}) from
pending_controls (the latest only), and "audience" (0 or 1) is the VJ's switch, a control like
blackout. The scenes on the ballot are `audience_scenes` (those the VJ allowed); the engine alone
decides whether the room's scene is recalled (show/live/controls.py).
Outputs never import the model or the navigator: the mode names are repeated here.
"""

import asyncio
import errno
import io
import json
import logging
import math
import struct
import threading
import time
from pathlib import Path

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web
from PIL import Image

from ...control.catalog import MODES
from ...errors import UserError
from .access import (
    HEADERS,
    host_and_port,
    is_loopback,
    new_token,
    origin_host,
    own_addresses,
    own_names,
    redact,
    token_matches,
    url_host,
)
from .audience import Audience, Room, qr_data_uri
from .limits import (
    IDLE_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    MESSAGES_PER_S,
    Client,
    Gate,
    ServerLogs,
    Tally,
    raise_open_files,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
CONTROL_RANGES = {  # numeric controls: (min, max), inclusive; the page's sliders use the same ranges
    "temperature": (0.01, 2.0),
    "speed": (0.0, 4.0),
    "sensitivity": (0.0, 4.0),
    "brightness": (0.0, 1.0),
    "detail": (0.0, 2.0),
}
SWITCHES = ("blackout", "freeze", "audience")  # 0 or 1: the page sends the state it wants, never a toggle
ACTIONS = ("next_image", "next_mode")  # no value (null): each one received is applied once
LEARN = "midi_learn"  # a control's name (or name=value; "" disarms), checked by the MIDI listener
METERS_INTERVAL_S = 0.1  # meters to each client at most ~10 times a second
START_TIMEOUT_S = 10.0
FRAME_POLL_S = 0.002  # how often the server thread looks for a newer frame while a page is open
RAW_MAX_PIXELS = 64 * 64  # small frames go raw to every page: a JPEG would save little and blur
LOOPBACK_RAW_MAX_PIXELS = 320 * 180  # ... and up to this raw to loopback pages (see the docstring)
JPEG_QUALITY = 90
FULL_CHROMA_MAX_PIXELS = 320 * 180  # JPEGs of frames up to this keep full chroma (4:4:4), larger 4:2:0
FRAME_ENCODINGS = ("auto", "raw", "jpeg")  # auto: JPEG to pages on other machines (see above)
SCENE_NAME_MAX = 64  # characters in a scene's name saved from the page


class WebOutput:
    """An HTTP + WebSocket server showing frames in browsers and taking controls from them.

    host, port : where to listen; port 0 picks a free port (see `urls` after start()). A host
        beyond loopback (0.0.0.0, a LAN address) makes every request need the token of `urls`.
    on_control : optional callable(name, value), called from the server thread for each valid
        control change (keep it quick; it must not touch engine state without a lock).
    image_sets : names offered in the page's image-set select; a control picking another name is
        rejected.
    controls : initial values shown by the page, e.g. {"mode": "weighted", "temperature": 0.1}.
    frame_encoding : "auto" (JPEG for frames over LOOPBACK_RAW_MAX_PIXELS to loopback pages,
        over RAW_MAX_PIXELS to others; raw below), "raw" or "jpeg" (every page, every size).
    audience : None (no audience page), or {image set name: [its images' names, in the show's
        order]}: the audience page is served and `audience_urls` says where (audience.py).
    audience_scenes : the scenes the audience may vote for (`audience = true` in --scenes).
    """

    def __init__(self, host="127.0.0.1", port=8765, on_control=None, image_sets=(), controls=None,
                 frame_encoding="auto", scenes=None, audience=None, audience_scenes=()):
        if frame_encoding not in FRAME_ENCODINGS:
            raise ValueError(f"frame_encoding must be one of {FRAME_ENCODINGS}, got {frame_encoding!r}")
        self.host, self.port = host, int(port)
        self.on_control = on_control
        self.image_sets = [str(name) for name in image_sets]
        self.scenes = None if scenes is None else [str(name) for name in scenes]  # None: no --scenes
        self.frame_encoding = frame_encoding
        self.controls = {"mode": MODES[0], "temperature": 0.1, "speed": 1.0, "sensitivity": 1.0}
        if self.image_sets:
            self.controls["image_set"] = self.image_sets[0]
        self.audience = None if audience is None else Audience(self.image_sets, audience, audience_scenes)
        if self.audience is not None:
            self.controls["audience"] = 1
        self.controls.update(controls or {})
        self.token = None if is_loopback(host) else new_token()  # loopback stays token-free
        self._names = self._addresses = None  # our Host names and LAN addresses, found by start()
        self._lock = threading.Lock()
        self._frame = None      # latest frame as a raw frame message (bytes), replaced by show()
        self._frame_seq = 0     # bumped by show(); clients compare with what they last sent
        self._jpeg = (0, None)  # server thread: (frame_seq, JPEG frame message), for every client
        self._meters = None     # latest meters (JSON text)
        self._meters_seq = 0
        self._state_seq = 0     # bumped when a control changes: every page gets the state
        self._pending = []      # (name, value) accepted from pages, drained by pending_controls()
        self._wake_scheduled = False
        self._loop = self._thread = self._runner = self._poller = self._listener = self._gate = None
        self._room = self._qr = self._tally = None      # the audience's sockets, QR code, tally text
        self._tally_seq = 0
        self._clients = {}      # ws -> Client
        self._refused = Tally("refused", "a request", "requests")
        self._server_logs = ServerLogs()  # aiohttp's own log lines and the loop's errors, summed up
        self.frames_sent = 0    # frame messages written to sockets, all clients together

    # -- the engine's side (any thread) -------------------------------------------------------

    @property
    def urls(self):
        """Where to open the page: http://127.0.0.1:PORT/ on loopback; bound beyond it, the
        machine's LAN address(es) with #token=... (the actual port once started with port 0)."""
        if self.token is None:
            return [f"http://{url_host(self.host)}:{self.port}/"]
        if self._addresses is None:
            self._addresses = own_addresses(self.host)
        return [f"http://{url_host(address)}:{self.port}/#token={self.token}"
                for address in self._addresses or ["127.0.0.1"]]

    @property
    def url(self):
        """The first of `urls`."""
        return self.urls[0]

    @property
    def audience_urls(self):
        """Where phones open the audience page (the QR code's URL): like `urls`, at /audience,
        with the audience's own token; [] without an audience."""
        if self.audience is None:
            return []
        return [url.split("#")[0] + f"audience#token={self.audience.token}" for url in self.urls]

    def show(self, frame, meters=None):
        """Hand the latest frame (uint8 (h, w, 3) RGB) and meters (a JSON-able dict) to the server.

        Returns at once: the frame is copied into a raw frame message (one copy, so the caller may
        reuse its array) that replaces any frame not yet sent; JPEG is left to the server thread.
        """
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"show expects a uint8 (h, w, 3) frame, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if not (0 < width < 65536 and 0 < height < 65536):
            raise ValueError(f"show expects a frame of 1..65535 pixels a side, got {width}x{height}")
        header = struct.pack("<HHB", width, height, 0)
        message = b"".join((header, np.ascontiguousarray(frame)))  # join copies once, header and all
        meters_text = None
        if meters is not None:
            meters_text = json.dumps({"type": "meters", "meters": meters}, default=_jsonable)
        with self._lock:
            self._frame = message
            self._frame_seq += 1
            if meters_text is not None:
                self._meters = meters_text
                self._meters_seq += 1
        # no self._wake(): the server thread polls (_poll_frames; the module docstring says why)

    def pending_controls(self):
        """The valid control changes received since the last call, oldest first: [(name, value)]."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def update_controls(self, mapping):
        """Set the values the pages show, {name: value}, and send every page the new state.

        For the engine, from its own thread, whenever a control changed from any source (window
        key, OSC, MIDI, a page): values equal to those shown are skipped, so echoing a page's own
        change costs nothing. The values are trusted (the engine's own), but must be JSON-able.
        """
        with self._lock:
            changed = {name: value for name, value in dict(mapping).items()
                       if name not in self.controls or self.controls[name] != value}
            if not changed:
                return
            json.dumps(changed, default=_jsonable)  # a TypeError here, in the caller's thread
            self.controls.update(changed)
            self._state_seq += 1
        self._wake()

    def control_applied(self, name, value, caption):
        """(The engine, after each control it applied.) A scene just saved joins the select."""
        if name == "save_scene" and self.scenes is not None:
            with self._lock:
                if value not in self.scenes:
                    self.scenes.append(str(value))
                self.controls["scene"] = str(value)
                self._state_seq += 1
            self._wake()

    def _wake(self):
        """Wake the server's clients from any thread; one wake-up in flight at a time, so 1,000
        calls queue no 1,000 callbacks."""
        with self._lock:
            loop = self._loop if not self._wake_scheduled else None
            self._wake_scheduled = self._wake_scheduled or loop is not None
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake_clients)
            except RuntimeError:  # the loop closed under us (close() in another thread)
                pass

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self):
        """Start the server thread; returns once it listens. A port in use is a UserError."""
        if self._thread is not None:
            return self
        self._names = own_names(self.host)
        raise_open_files()  # before the first connection: slow clients must not starve the show of fds
        self._server_logs.install()
        self._wake_scheduled = False
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._server_logs.loop_error)  # accept() on EMFILE, etc.
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
        self._server_logs.uninstall()
        self._thread = self._runner = self._poller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- the server thread --------------------------------------------------------------------

    async def _serve(self):
        @web.middleware
        async def guard(request, handler):
            reason = self._refusal(request)
            if reason is not None:
                line = redact(request.path_qs)[:80]
                self._refused.add(f"{request.remote} {request.method} {line}: {reason}")
                return web.Response(status=403, text=f"flowvj: refused: {reason}\n")
            return await handler(request)

        async def secure(request, response):  # every response the app prepares: 403s, 404s, files, /ws
            response.headers.update(HEADERS)

        app = web.Application(middlewares=[guard])
        app.on_response_prepare.append(secure)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", STATIC)
        if self.audience is not None:
            self._room = Room(self.audience, self._read_show, self._lean)
            app.router.add_get("/audience", self._audience_page)
            app.router.add_get("/audience/ws", self._room.socket)
        # keepalive_timeout: aiohttp's default keeps an idle connection an hour, and the same timer is
        # its only bound on a connection that never completes its request's headers (limits.py)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=IDLE_TIMEOUT_S)
        await self._runner.setup()
        try:  # a listener of our own, not aiohttp's TCPSite: the Gate counts connections per address
            self._gate = Gate(self._runner.server)
            self._listener = await asyncio.get_running_loop().create_server(
                self._gate, self.host, self.port, reuse_address=True)
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        if self.port == 0:
            self.port = self._listener.sockets[0].getsockname()[1]  # the port the system picked
        self._poller = asyncio.get_running_loop().create_task(self._poll_frames())
        if self._room is not None:
            self._qr = json.dumps({"type": "audience", "urls": self.audience_urls,
                                   "qr": qr_data_uri(self.audience_urls[0])})
            self._ticker = asyncio.get_running_loop().create_task(self._room.tick_forever())

    def _refusal(self, request):
        """Why this request is refused (one line), or None: see access.py for each check."""
        host_header = request.headers.get("Host", "")
        host = host_and_port(host_header)
        if host is None or host[0] not in self._names or host[1] != self.port:
            expected = f"{url_host(self.host)}:{self.port}" if self.token is None else f"this machine:{self.port}"
            return f"Host {host_header!r} is not this server (expected {expected})"
        origin = request.headers.get("Origin")
        # No Origin: browsers always send one on a WebSocket handshake, so this is a program, not
        # a web page: on loopback it runs on this machine as someone who could stop the show
        # anyway; beyond loopback it still needs the token below.
        if origin is not None and origin_host(origin) != host:
            return f"Origin {origin!r} is not this page's own (http://{host_header})"
        if (self.token is not None and request.path == "/ws"  # the controls; the page is no secret
                and not token_matches(request.query.get("token"), self.token)):
            return "this show is open to the network: open the URL with #token=... that flowvj printed"
        if (self.audience is not None and request.path == "/audience/ws"     # on loopback too
                and not token_matches(request.query.get("token"), self.audience.token)):
            return "the audience page needs the URL of the QR code the VJ page shows"
        return None

    async def _poll_frames(self):
        """Wake the pages' send loops when show() has stored a newer frame (or meters): checked
        every FRAME_POLL_S while a page is open, in the server thread, so the engine's thread
        never wakes this one (see the module docstring)."""
        seen = -1
        while True:
            await asyncio.sleep(FRAME_POLL_S if self._clients else 0.05)
            latest = self._frame_seq, self._meters_seq     # ints read without the lock: a hint
            if self._clients and latest != seen:
                seen = latest
                self._wake_clients()

    async def _shutdown(self):
        if self._poller is not None:
            self._poller.cancel()
        if self._room is not None:
            self._ticker.cancel()
        self._listener.close()
        for ws in list(self._clients):
            await ws.close()
        if self._room is not None:
            await self._room.close()
        await self._runner.cleanup()
        self._refused.flush()
        self._gate.refused.flush()

    async def _index(self, request):
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _audience_page(self, request):
        return web.FileResponse(STATIC / "audience.html", headers={"Cache-Control": "no-cache"})

    def _read_show(self):
        """(The audience's Room, every tick.) The set on screen and the VJ's switch, as shown."""
        with self._lock:
            return self.controls.get("image_set"), bool(self.controls.get("audience", 1))

    def _lean(self, bias, tally):
        """(The audience's Room, when the tally changed.) The bias to the engine, the latest only,
        through pending_controls; the tally to every VJ page."""
        text = json.dumps({"type": "tally", **tally})
        with self._lock:
            self._pending = [item for item in self._pending if item[0] != "audience_bias"]
            self._pending.append(("audience_bias", bias))
            self._tally, self._tally_seq = text, self._tally_seq + 1
        self._wake_clients()

    def _wake_clients(self):
        with self._lock:
            self._wake_scheduled = False
        for client in self._clients.values():
            client.wake.set()

    async def _websocket(self, request):
        # heartbeat 30 s (a pong may take 15): a browser starved of CPU on a busy laptop answered
        # a 10 s heartbeat late and was dropped mid-show (benchmarks/live/resolution_targets.py at 60 fps)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES,
                                   compress=False)  # deflate: CPU per frame and page; JPEG saves more
        await ws.prepare(request)
        peer = request.remote or "?"
        client = Client(peer, jpeg=not is_loopback(peer))   # jpeg: a remote page ("auto" sends it more)
        self._clients[ws] = client
        sender = asyncio.create_task(self._send_loop(ws, client))
        try:
            async for message in ws:
                if message.type == WSMsgType.ERROR:  # too big or not UTF-8: aiohttp has closed it
                    self._drop(client, str(message.data))
                    break
                if client.over_rate():
                    sender.cancel()
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
                    self._drop(client, f"more than {MESSAGES_PER_S} messages/s")
                    break
                if message.type == WSMsgType.TEXT:
                    try:
                        self._receive(client, message.data)
                    except Exception as error:  # noqa: BLE001 - one bad message must not end the page
                        client.bad.add(f"{message.data[:120]!r}: {type(error).__name__}: {error}")
                else:
                    client.bad.add("a binary message")
        finally:
            del self._clients[ws]
            sender.cancel()
            client.bad.flush()
        return ws

    def _drop(self, client, reason):
        if not client.bad.flush(f"; dropped the page: {reason}"):
            log.warning("web output: dropped the page at %s: %s", client.peer, reason)

    async def _send_loop(self, ws, client):
        """Send this client the latest frame whenever there is a newer one, the state when it
        changed, and the meters when newer and at least METERS_INTERVAL_S after the last; a slow
        client simply skips frames."""
        frame_seq = meters_seq = tally_seq = 0
        state_seq = -1
        meters_due = 0.0
        try:
            if self._qr is not None:
                await ws.send_str(self._qr)     # the audience page's URL and QR code, once
            while not ws.closed:
                await client.wake.wait()
                client.wake.clear()
                with self._lock:
                    frame, new_frame_seq = self._frame, self._frame_seq
                    meters, new_meters_seq = self._meters, self._meters_seq
                    state = self._state_message() if state_seq != self._state_seq else None
                    state_seq = self._state_seq
                    tally = self._tally if tally_seq != self._tally_seq else None
                    tally_seq = self._tally_seq
                if state is not None:
                    await ws.send_str(state)
                if tally is not None:
                    await ws.send_str(tally)
                if new_frame_seq != frame_seq and frame is not None:
                    frame_seq = new_frame_seq
                    await ws.send_bytes(self._frame_message(frame, frame_seq, remote=client.jpeg))
                    self.frames_sent += 1
                now = time.monotonic()
                if new_meters_seq != meters_seq and now >= meters_due:
                    meters_seq, meters_due = new_meters_seq, now + METERS_INTERVAL_S
                    await ws.send_str(meters)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass  # the page went away; its handler cleans up

    def _frame_message(self, raw, frame_seq, remote):
        """The message of a frame for a client (raw, or JPEG: see the module docstring), each
        JPEG encoded once per frame however many clients take it."""
        width, height = struct.unpack_from("<HH", raw)
        pixels = width * height
        if self.frame_encoding == "raw" or (self.frame_encoding == "auto" and pixels <= (
                RAW_MAX_PIXELS if remote else LOOPBACK_RAW_MAX_PIXELS)):
            return raw
        if self._jpeg[0] != frame_seq:
            frame = np.frombuffer(raw, np.uint8, offset=5).reshape(height, width, 3)
            buffer = io.BytesIO()
            buffer.write(struct.pack("<HHB", width, height, 1))
            Image.fromarray(frame).save(buffer, "JPEG", quality=JPEG_QUALITY,
                                        subsampling=0 if pixels <= FULL_CHROMA_MAX_PIXELS else 2)
            self._jpeg = (frame_seq, buffer.getvalue())
        return self._jpeg[1]

    def _receive(self, client, text):
        try:
            name, value = self._validate(json.loads(text))
        except (ValueError, TypeError, KeyError, RecursionError,  # [[[[... nests too deep
                OverflowError) as error:                           # an int of 400 digits
            client.bad.add(f"{text[:120]!r}: {error}")
            return
        with self._lock:
            self._pending.append((name, value))
            if name == LEARN:  # unknown until the show says what is armed (update_controls)
                self.controls[name] = None
            elif name not in ACTIONS:  # an action has no value to show
                self.controls[name] = value
                self._state_seq += 1  # every page shows the new value (sent by each page's send loop)
        if self.on_control is not None:
            try:
                self.on_control(name, value)
            except Exception:  # noqa: BLE001 - a bad callback must not take the server down
                log.exception("web output: on_control(%r, %r) failed", name, value)
        self._wake_clients()

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
        if name in ("scene", "save_scene") and self.scenes is not None:
            if name == "scene" and value not in self.scenes:
                raise ValueError(f"scene must be one of {self.scenes}")
            if not (isinstance(value, str) and 0 < len(value.strip()) and len(value) <= SCENE_NAME_MAX
                    and value.isprintable()):
                raise ValueError(f"{name} must be a name of 1..{SCENE_NAME_MAX} printable characters")
            return name, value if name == "scene" else value.strip()
        if name in ACTIONS:
            if value is not None:
                raise ValueError(f"{name} takes no value (null)")
            return name, None
        if name in SWITCHES:
            if type(value) is not int or value not in (0, 1):
                raise ValueError(f"{name} must be 0 or 1")
            return name, value
        if name == LEARN:  # the MIDI listener checks the name (or says why there is none)
            if not (isinstance(value, str) and len(value) <= SCENE_NAME_MAX and value.isprintable()):
                raise ValueError(f"{name} must be a control's name (or name=value, or \"\" to disarm)")
            return name, value.strip()
        if name in CONTROL_RANGES:
            low, high = CONTROL_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number")
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}]")
            return name, float(value)
        raise ValueError(f"unknown control {name!r}")

    def _state_message(self):
        """(Called under the lock: the engine's thread may be updating the controls.)"""
        return json.dumps({"type": "state", "controls": self.controls, "image_sets": self.image_sets,
                           "scenes": self.scenes, "modes": list(MODES), "ranges": CONTROL_RANGES},
                          default=_jsonable)


def _jsonable(value):
    """numpy scalars and arrays in meters -> plain numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
