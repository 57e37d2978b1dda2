"""What a misbehaving page gets: a bound on its message rate, and warnings summed up instead of
one line per bad message (a flood of junk must neither stall the show nor flood its terminal).
The size bound is aiohttp's own (max_msg_size=MAX_MESSAGE_BYTES, see server.py)."""

import asyncio
import logging
import time

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096  # a control message is under 100 bytes
MESSAGES_PER_S = 50       # sustained, per page; view.js sends at most ~20/s however fast a slider moves
MESSAGE_BURST = 100       # messages a page may send at once before the rate counts
BAD_LOG_INTERVAL_S = 5.0


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


class Tally:
    """Warnings of one kind: the first is logged at once, the rest summed up in at most one line
    per BAD_LOG_INTERVAL_S (and at flush), so a flood of junk cannot flood the show's terminal."""

    def __init__(self, verb, one, many):
        self.verb, self.one, self.many = verb, one, many
        self.count, self.last = 0, ""
        self.since, self.due = time.monotonic(), 0.0

    def add(self, detail):
        self.count += 1
        self.last = detail
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
