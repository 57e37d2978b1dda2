"""What a misbehaving client gets: a bound on a page's message rate and on the connections one
address holds open, and warnings summed up instead of one line per bad message or request (a flood
of junk must neither stall the show nor flood its terminal). The message size bound is aiohttp's own
(max_msg_size=MAX_MESSAGE_BYTES) and so is the idle timeout (keepalive_timeout=IDLE_TIMEOUT_S),
both set in server.py.

Slow headers (slowloris): aiohttp 3.14 bounds the wait for a request's headers only by its keep-alive
timer, an hour by default, so 1,100 connections each holding half a request exhausted the show's
1,024 file descriptors. Three things stop that: IDLE_TIMEOUT_S (that timer runs from the moment a
connection opens and closes it while no whole request has arrived, however slowly header lines
trickle in), MAX_CONNECTIONS_PER_ADDRESS (Gate) and a raised open-file limit (raise_open_files).
Should descriptors still run out, accept() failing (EMFILE) is summed up like any other server
error (ServerLogs) instead of a traceback per retry.
"""

import asyncio
import collections
import logging
import time

try:
    import resource
except ImportError:  # Windows: no open-file limit to raise
    resource = None

from .access import redact

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096  # a control message is under 100 bytes
MESSAGES_PER_S = 50       # sustained, per page; view.js sends at most ~20/s however fast a slider moves
MESSAGE_BURST = 100       # messages a page may send at once before the rate counts
BAD_LOG_INTERVAL_S = 5.0
IDLE_TIMEOUT_S = 10.0            # a connection idle, or without a whole request, this long is closed
MAX_CONNECTIONS_PER_ADDRESS = 32  # a browser opens ~6 per server (plus one per page's WebSocket)
AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.websocket", "aiohttp.access")


class Client:
    """One open page: its wake-up event, its frame encoding, its message allowance, its tally."""

    def __init__(self, peer, jpeg):
        self.peer, self.jpeg = peer, jpeg
        self.wake = asyncio.Event()
        self.wake.set()  # the state, and the latest frame if there is one
        self.allowance, self.refilled = float(MESSAGE_BURST), time.monotonic()
        self.bad = Tally("ignored", f"a bad message from {peer}", f"bad messages from {peer}")

    def over_rate(self):
        """One more message: whether the page is now over MESSAGES_PER_S sustained (a token
        bucket of MESSAGE_BURST, refilled at MESSAGES_PER_S, so a burst of clicks passes)."""
        now = time.monotonic()
        self.allowance = min(float(MESSAGE_BURST), self.allowance + (now - self.refilled) * MESSAGES_PER_S) - 1
        self.refilled = now
        return self.allowance < 0


class Bucket:
    """A token bucket: `take()` spends one of `burst` tokens, refilled at `per_s`; False when none
    is left. Client's message bound, with other figures (the audience page's, audience.py)."""

    def __init__(self, per_s, burst):
        self.per_s, self.burst = float(per_s), float(burst)
        self.tokens, self.refilled = self.burst, time.monotonic()

    def take(self, now=None):
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.per_s)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Tally:
    """Warnings of one kind: the first is logged at once, the rest summed up in at most one line
    per BAD_LOG_INTERVAL_S (and at flush), so a flood of junk cannot flood the show's terminal."""

    def __init__(self, verb, one, many):
        self.verb, self.one, self.many = verb, one, many
        self.count, self.last = 0, ""
        self.since, self.due = time.monotonic(), 0.0

    def add(self, detail):
        self.count += 1
        self.last = redact(detail)
        if time.monotonic() >= self.due:
            self.flush()

    def flush(self, suffix=""):
        """Log what was counted since the last line, if anything; returns whether it logged."""
        now = time.monotonic()
        count, self.count = self.count, 0
        if count == 1:
            log.warning("web output: %s %s: %s%s", self.verb, self.one, self.last, suffix)
        elif count > 1:
            log.warning("web output: %s %d %s in the last %.0f s (last: %s)%s", self.verb, count,
                        self.many, now - self.since, self.last, suffix)
        self.since, self.due = now, now + BAD_LOG_INTERVAL_S
        return count > 0


class Gate:
    """A protocol factory for loop.create_server that counts each address's open connections and
    closes one over MAX_CONNECTIONS_PER_ADDRESS at once, before aiohttp (`factory`) sees it. By
    address, not by network: a LAN shares one IPv6 /64, so a cap per prefix would be one for all."""

    def __init__(self, factory):
        self.factory = factory
        self.open = collections.Counter()
        self.refused = Tally("refused", "a connection", "connections")

    def __call__(self):
        return _Counted(self)


class _Counted(asyncio.Protocol):
    """One connection: counted against its address, then handed to aiohttp's protocol, which gets
    every call the loop makes (this forwards them; the transport is aiohttp's to use as its own)."""

    def __init__(self, gate):
        self.gate, self.inner, self.address = gate, None, None

    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        address = peer[0] if peer else "?"
        if self.gate.open[address] >= MAX_CONNECTIONS_PER_ADDRESS:
            self.gate.refused.add(f"{address}: it has {MAX_CONNECTIONS_PER_ADDRESS} open already")
            transport.abort()
            return
        self.gate.open[address] += 1
        self.address, self.inner = address, self.gate.factory()
        self.inner.connection_made(transport)

    def connection_lost(self, exc):
        if self.inner is None:
            return
        self.gate.open[self.address] -= 1
        if not self.gate.open[self.address]:
            del self.gate.open[self.address]
        self.inner.connection_lost(exc)

    def data_received(self, data):
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self):
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self):
        if self.inner is not None:
            self.inner.resume_writing()


class ServerLogs(logging.Filter):
    """aiohttp's own server loggers and the server loop's errors, through one Tally: a malformed
    request made aiohttp log a traceback of ~10 lines (20,292 of them in 10 s wrote 223,212 lines),
    and accept() failing for want of file descriptors made asyncio log one per retry. One line
    each, the first at once, the rest summed up. Records below WARNING (aiohttp's debug lines, on
    only when asked for) pass unchanged."""

    def __init__(self):
        super().__init__()
        self.tally = Tally("had", "an error serving a client", "errors serving clients")

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return True
        error = record.exc_info[1] if record.exc_info else None
        self.tally.add(one_line(record.getMessage(), error))
        return False

    def loop_error(self, loop, context):
        """For loop.set_exception_handler: what asyncio would have logged with a traceback."""
        self.tally.add(one_line(context.get("message", "error"), context.get("exception")))

    def install(self):
        for name in AIOHTTP_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def uninstall(self):
        for name in AIOHTTP_LOGGERS:
            logging.getLogger(name).removeFilter(self)
        self.tally.flush()


def one_line(message, error=None, limit=200):
    """'message: ErrorType: what', whitespace folded (aiohttp's parse errors span lines), cut."""
    text = message if error is None else f"{message}: {type(error).__name__}: {error}"
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def raise_open_files():
    """Raise this process's open-file soft limit to its hard limit (often 1,024 of 524,288 on
    Linux), so connections the gate and timeouts have not yet closed cannot starve the show of
    file descriptors. Returns the soft limit now in force (None on Windows); a refusal leaves the
    old one."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536  # macOS refuses "unlimited" here
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.debug("web output: could not raise the open-file limit from %d", soft)
    return soft
