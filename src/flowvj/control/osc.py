"""OSC in and out: a VJ's rig (TouchOSC, Resolume, DJ software) steers the show and hears it.

In: `OscInput` listens on a UDP port (python-osc's server, in a thread of its own) for one
address per control of control/catalog.py, `/flowvj/<name>`, checks each value with
check_value and posts it to the live loop's ControlBus; the engine drains the bus once a frame
and announces the change. A bad message (unknown address, wrong type or count, out of range, not
OSC at all) is dropped and counted, with at most one warning line every few seconds: a stuck
fader spraying junk must neither flood the terminal nor touch the show.

Out: `OscTelemetry` is an output like the window: the live loop calls `show(frame, meters)`
each frame, and it sends the beat, tempo, levels, frame rate and state from the meters to one
HOST:PORT over a non-blocking UDP socket, so a slow or absent receiver never stalls a frame.
"""

import logging
import math
import re
import socket
import threading
import time

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError
from pythonosc.osc_server import BlockingOSCUDPServer

from ..errors import UserError
from .catalog import CONTROLS, check_value

log = logging.getLogger(__name__)
PREFIX = "/flowvj/"
WARN_EVERY_S = 5.0          # at most one warning line about bad messages this often
ACTION_HELP = "no argument, or a number: non-zero triggers, 0 is ignored as a button's release"

# What the telemetry sends: address, OSC type tags, when and what.
TELEMETRY = (
    ("/flowvj/beat", "i", "a running beat index (1, 2, ...), sent in the frame the beat falls in"),
    ("/flowvj/tempo", "f", "the tempo in BPM (0 until it locks), on a change of more than 0.05 BPM "
                           "and at least once a second"),
    ("/flowvj/levels", "fffff", "the smoothed rms, then each band's level, low to high (4 bands by "
                                "default), up to 30 times a second"),
    ("/flowvj/fps", "f", "the frames drawn per second, once a second"),
    ("/flowvj/state", "sss", 'mode, scene (or ""), image set (or ""), whenever one of them changes'),
)


# -- addresses and flags -----------------------------------------------------------------------

def addresses():
    """Every OSC address flowvj listens to and sends, as `flowvj osc-addresses --json` prints it:
    {"controls": [{address, type, low, high, choices, help}], "telemetry": [{address, type, help}]}.
    type is the OSC type tag the control takes ("" for an action, which takes no argument)."""
    controls = [{"address": PREFIX + c.name, "type": c.kind, "low": c.low, "high": c.high,
                 "choices": list(c.choices), "help": c.help + (f" ({ACTION_HELP})" if c.kind == "" else "")}
                for c in CONTROLS.values()]
    telemetry = [{"address": address, "type": tags, "help": text} for address, tags, text in TELEMETRY]
    return {"controls": controls, "telemetry": telemetry}


def addresses_table():
    """`flowvj osc-addresses` as text: one line per address, type tag, range or choices, help."""
    def values(entry):
        if entry["choices"]:
            return " | ".join(entry["choices"])
        if entry["type"] in ("f", "i"):
            return f"{entry['low']:g}..{entry['high']:g}"
        return "a name" if entry["type"] == "s" else "-"

    listing = addresses()
    lines = ["Controls (send them to --osc-port):"]
    lines += [f"  {e['address']:<22} {e['type'] or '-':<5} {values(e):<30} {e['help']}" for e in listing["controls"]]
    lines += ["", "Telemetry (sent to --osc-send HOST:PORT):"]
    lines += [f"  {e['address']:<22} {e['type']:<5} {e['help']}" for e in listing["telemetry"]]
    return "\n".join(lines)


def parse_port(text):
    """--osc-port: a UDP port 0..65535 (0 picks a free one); ValueError saying what was expected."""
    value = int(text) if re.fullmatch(r"\s*\d{1,5}\s*", str(text)) else -1
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a UDP port 0..65535 (0 picks a free one), got {text!r}")
    return value


def parse_target(text):
    """--osc-send HOST:PORT (an IPv6 host in brackets, [::1]:9000) -> (host, port); ValueError
    saying what was expected. The host is looked up later, by OscTelemetry."""
    match = re.fullmatch(r"\s*(?:\[([^\]]+)\]|([^:\s\[\]]+)):(\d{1,5})\s*", str(text))
    if not match or not 1 <= int(match[3]) <= 65535:
        raise ValueError(f"expected HOST:PORT to send telemetry to (a port 1..65535), e.g. 127.0.0.1:9000, "
                         f"got {text!r}")
    return match[1] or match[2], int(match[3])


def control_value(address, args):
    """The (name, value) an OSC message sets, None when it asks for nothing (a button's release),
    or ValueError saying why it is refused.

    Lenient where controllers differ, strict elsewhere: an int is fine for a float control; for
    a 0/1 switch a whole float (TouchOSC's toggles send 0.0 / 1.0) or True/False is too, but
    not 0.5, which would otherwise round silently to "off"."""
    name = address[len(PREFIX):] if address.startswith(PREFIX) else None
    control = CONTROLS.get(name)
    if control is None:
        raise ValueError("unknown address (see flowvj osc-addresses)")
    if control.kind == "":
        if not args:
            return name, None
        if len(args) == 1 and isinstance(args[0], (int, float)):
            return (name, None) if args[0] else None
        raise ValueError(f"{name} takes {ACTION_HELP}")
    if len(args) != 1:
        raise ValueError(f"{name} takes one argument (type {control.kind}), got {len(args)}")
    value = args[0]
    if control.kind == "i" and isinstance(value, (bool, float)):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name} expects a whole number in {control.low:g}..{control.high:g}, got {value!r}")
        value = int(value)
    return name, check_value(name, value)


def _shown(address, args, limit=80):
    """A message as a warning line shows it, cut short: junk can be long."""
    text = " ".join([address, *map(repr, args)])
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- in ----------------------------------------------------------------------------------------

class _Server(BlockingOSCUDPServer):
    """python-osc's UDP server, one message at a time in its thread (so the controls keep their
    order), which hands every datagram to OscInput: the stock one drops what is not OSC
    without a word, and we count it."""

    def verify_request(self, request, client_address):
        return True

    def service_actions(self):
        """Called by serve_forever between datagrams and at least every poll interval: the
        summary of a burst of bad messages comes out a few seconds after it, not at the end."""
        self.dispatcher.report_bad()


class OscInput:
    """Listens for OSC controls on host:port and posts each valid one to `bus` (source "osc")
    from its own thread. It binds in the constructor, so a port in use or a host this machine
    cannot listen on is a UserError before anything slow starts; `port` is the port bound (0
    picks a free one). `received`, `posted` and `bad` count messages; close() stops it."""

    def __init__(self, bus, host="127.0.0.1", port=0, warn_every_s=WARN_EVERY_S, poll_s=0.1):
        self.bus, self.warn_every_s = bus, float(warn_every_s)
        self.received = self.posted = self.bad = 0
        self._unreported, self._latest, self._warned_at = 0, "", -math.inf
        try:
            self._server = _Server((host, port), self)  # python-osc calls self.call_handlers_for_packet
        except OSError as error:
            raise UserError(_bind_error(host, port, error)) from None
        self.host, self.port = self._server.server_address[:2]
        self.listening_on = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(poll_s,),
                                        name="flowvj-osc", daemon=True)
        self._thread.start()

    def call_handlers_for_packet(self, data, client_address):
        """Every message of one datagram (a bundle's all at once: a live show has no use for
        a timetag that says later). Returns no replies (python-osc would send them back)."""
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except ParseError:
            self._refuse(f"a datagram of {len(data)} bytes from {client_address[0]}", "not OSC")
            return []
        for message in messages:
            self.received += 1
            try:
                change = control_value(message.address, message.params)
            except ValueError as error:
                self._refuse(_shown(message.address, message.params), str(error))
                continue
            if change is not None:
                self.bus.post(*change, source="osc")
                self.posted += 1
        return []

    def _refuse(self, what, why):
        self.bad += 1
        self._unreported += 1
        self._latest = f"{what}: {why}"
        self.report_bad()

    def report_bad(self, force=False):
        """The warning line about the bad messages not yet reported, unless one was written in
        the last warn_every_s (force: now anyway, as close does)."""
        now = time.monotonic()
        if not self._unreported or (not force and now - self._warned_at < self.warn_every_s):
            return
        if self._warned_at == -math.inf:
            log.warning("OSC: ignored %s (bad messages are summarised at most every %g s)", self._latest,
                        self.warn_every_s)
        elif self._unreported == 1:
            log.warning("OSC: ignored %s", self._latest)
        else:
            log.warning("OSC: ignored %d more bad messages, the latest %s", self._unreported, self._latest)
        self._unreported, self._warned_at = 0, now

    def close(self):
        if self._thread.is_alive():
            self._server.shutdown()     # returns once serve_forever has (within one poll_s)
            self._thread.join()
        self._server.server_close()
        self.report_bad(force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _bind_error(host, port, error):
    """The one line for a failed bind: the flag that was wrong and what to do instead."""
    import errno

    if error.errno == errno.EADDRINUSE:
        return f"--osc-port {port}: UDP port {port} on {host} is in use; choose another, or 0 for a free one"
    if error.errno == errno.EACCES:
        return f"--osc-port {port}: not allowed to listen on UDP port {port}; choose 1024..65535, or 0"
    reason = getattr(error, "strerror", None) or str(error)
    return (f"--osc-host {host}: cannot listen there ({reason}); expected an address of this machine, "
            "e.g. 127.0.0.1 or 0.0.0.0 (every interface)")


# -- out ---------------------------------------------------------------------------------------

def _next_time(next_s, now, period_s):
    """When a message sent every period_s is next due: on a grid of the period, so at most one a
    period however the frames fall; restarted from now after a stall (or the first send), so a
    stall never brings a burst."""
    return next_s + period_s if now - next_s < period_s else now + period_s


class OscTelemetry:
    """An output that sends the show's telemetry as OSC to host:port (see TELEMETRY): from the
    meters of each `show(frame, meters)`, on a non-blocking UDP socket. Nothing it does can
    block or raise into the frame loop: a failed send is counted (`errors`) and warned about
    once. The host is looked up here, so a name that does not resolve is a UserError at start."""

    def __init__(self, host, port, levels_hz=30.0):
        try:
            family, _, _, _, self.address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise UserError(f"--osc-send {host}:{port}: cannot look up {host!r} ({reason}); expected HOST:PORT, "
                            "e.g. 127.0.0.1:9000") from None
        self.host, self.port = host, port
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        if family == socket.AF_INET:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)  # a LAN's x.x.x.255 too
        self.levels_period_s = 1.0 / float(levels_hz)
        self.sent = self.errors = self.beats = 0
        self._tempo, self._state = None, None
        self._tempo_next = self._levels_next = self._fps_next = -math.inf

    def show(self, frame, meters):
        try:
            self._send_meters(meters, time.monotonic())
        except Exception:  # noqa: BLE001 - telemetry must never stop the show; a bug is logged once
            self.errors += 1
            if self.errors == 1:
                log.exception("OSC: telemetry failed; the show goes on without it")

    def _send_meters(self, meters, now):
        if meters.get("beat"):
            self.beats += 1
            self._send("/flowvj/beat", ("i", self.beats))
        tempo = float(meters.get("tempo_bpm") or 0.0)
        if self._tempo is None or abs(tempo - self._tempo) > 0.05 or now >= self._tempo_next:
            self._send("/flowvj/tempo", ("f", tempo))
            self._tempo, self._tempo_next = tempo, now + 1.0
        if now >= self._levels_next:
            levels = [float(meters.get("rms") or 0.0), *map(float, meters.get("bands") or ())]
            self._send("/flowvj/levels", *(("f", level) for level in levels))
            self._levels_next = _next_time(self._levels_next, now, self.levels_period_s)
        if now >= self._fps_next:
            self._send("/flowvj/fps", ("f", float(meters.get("fps") or 0.0)))
            self._fps_next = _next_time(self._fps_next, now, 1.0)
        state = tuple(str(meters.get(key) or "") for key in ("mode", "scene", "image_set"))
        if state != self._state:
            self._send("/flowvj/state", *(("s", text) for text in state))
            self._state = state

    def _send(self, address, *typed_args):
        builder = OscMessageBuilder(address)
        for tag, value in typed_args:
            builder.add_arg(value, tag)
        try:
            self._socket.sendto(builder.build().dgram, self.address)
            self.sent += 1
        except OSError as error:  # a full buffer (EAGAIN), no route, ...: drop it, never wait
            self.errors += 1
            if self.errors == 1:
                log.warning("OSC: telemetry to %s:%d not sent (%s); further failures are only counted",
                            self.host, self.port, error.strerror or error)

    def close(self):
        if self.errors > 1:
            log.warning("OSC: %d telemetry messages to %s:%d were not sent", self.errors, self.host, self.port)
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
