"""The audience's voice: the ballots phones cast on the audience page (GET /audience, reached by
the QR code the VJ page shows), counted into one tally, and the bias the show leans on.

A ballot names, each optional: an `image` of the set on screen (its file's name), a `set` of
those the VJ offered (--image-sets), a `mood` (calm / intense) and a `scene` of those the VJ
allowed (`audience = true` in the --scenes file). The show leans on images and mood (`bias`: the
share of the room behind each image, the mood's balance -1..1); the sets are a tally for the VJ
alone, because a set switch replaces every image at once: there is no way to lean toward one a
little, and taking it would override the VJ. The scenes' counts go to the engine too, which
recalls the room's scene only on a clear lead and long after any scene change (the rule is the
engine's, show/live/controls.py: this thread only counts). Ballots last VOTE_TTL_S (the page
casts its choice again every REFRESH_S while open), so the tally is the room as it is now. Fewer
than FULL_VOICE ballots speak with a proportionally smaller voice: one phone alone moves the
show a tenth of what a room does.

What holds a room (each figure below):
  - one ballot per phone per VOTE_INTERVAL_S; sooner, it is refused with the seconds to wait;
  - the phone's id is issued by the server (a random part and its HMAC under a secret that
    never leaves the server) and kept by the page; an id the server did not sign is replaced;
  - at most VOTERS_PER_ADDRESS phones' ballots count from one network address, so a page that
    throws its id away and asks for another gains nothing past that cap;
  - at most MAX_VOTERS ballots in all, MAX_SOCKETS audience sockets open; every message at most
    MAX_MESSAGE_BYTES (aiohttp closes a larger one) and MESSAGES_PER_S sustained (MESSAGE_BURST at
    once), over which the socket is closed;
  - the audience socket takes ballots and nothing else: a control message is refused and counted
    (`control_attempts`), it never reaches the show. Its token is its own (`token`, in the QR
    code's URL), distinct from the VJ's, which the audience never sees.
What a phone can fake, and what it cannot: it cannot forge an id, vote more often than the
interval with one id, or count for more than VOTERS_PER_ADDRESS from its address, and it cannot
reach a control. It can clear its id and take a new one (counted within its address's cap), and
a machine that holds many addresses on the network (a laptop with a hundred IPv6 addresses)
counts as that many phones: the cap is per address, which is all a server sees. Against that the
VJ has the switch (`audience`): off, the votes are still counted, and the show follows none.

State lives in the server's thread (server.py calls every method there); `bias()` is what the
server hands the engine, through pending_controls, the one path controls take into the show.
"""

import asyncio
import hashlib
import hmac
import json
import secrets
import time

from aiohttp import WSCloseCode, WSMsgType, web

from .access import new_token
from .limits import Bucket, Tally

MOODS = ("calm", "intense")
KINDS = ("image", "set", "mood", "scene")
VOTE_INTERVAL_S = 3.0       # one ballot per phone this often
VOTE_TTL_S = 120.0          # a ballot counts this long after it was cast ...
REFRESH_S = 50.0            # ... and an open page casts it again this often
FULL_VOICE = 10             # ballots at which the room has its full say
VOTERS_PER_ADDRESS = 4      # phones whose ballots count from one address (a few behind one NAT)
MAX_VOTERS = 5000           # ballots held at once
MAX_SOCKETS = 2000          # audience sockets open at once
MAX_MESSAGE_BYTES = 512     # a ballot is under 100 bytes
MESSAGES_PER_S, MESSAGE_BURST = 1.0, 5  # the page sends a ballot at most every VOTE_INTERVAL_S
NAME_MAX = 128              # characters in a choice's name
TICK_S = 0.5                # the tally, the bias and the phones' choices brought up to date this often


class Audience:
    """The room's ballots, the tally and the bias.

    image_sets : the set names the VJ offered, in order.
    images : {set name: [image names, in the show's order]}; a set without names offers none.
    scenes : the names of the scenes the VJ allowed the audience (none: no scene on the ballot).
    """

    def __init__(self, image_sets, images=None, scenes=()):
        self.token = new_token()
        self._secret = secrets.token_bytes(32)
        self.image_sets = [str(name) for name in image_sets]
        self.images = {str(name): [str(image)[:NAME_MAX] for image in names]
                       for name, names in (images or {}).items()}
        self.image_set = self.image_sets[0] if self.image_sets else None
        self.scenes = [str(name) for name in scenes]
        self.ballots = {}           # voter id -> {"choice": {kind: value}, "cast": s, "address": str}
        self.cast_at = {}           # voter id -> when its last ballot was taken (kept past TTL a while)
        self.accepted = self.refused = self.control_attempts = 0

    # -- ids --------------------------------------------------------------------------------

    def voter(self, given=None):
        """`given` when the server signed it, else a new id (a random part . its HMAC)."""
        if isinstance(given, str) and "." in given and len(given) <= 80:
            raw, _, mac = given.partition(".")
            if hmac.compare_digest(mac, self._mac(raw)):
                return given
        raw = secrets.token_urlsafe(12)
        return f"{raw}.{self._mac(raw)}"

    def _mac(self, raw):
        return hmac.new(self._secret, raw.encode(), hashlib.sha256).hexdigest()[:24]

    # -- ballots ----------------------------------------------------------------------------

    def choices(self):
        """What a phone may choose now: the images of the set on screen, the sets, the moods, the
        scenes allowed."""
        return {"image": self.images.get(self.image_set, []), "set": self.image_sets, "mood": list(MOODS),
                "scene": self.scenes}

    def show_set(self, name):
        """The engine now shows set `name`: image ballots name that set's images from now on
        (ballots for another set's images stay, and count again if the show goes back to it)."""
        self.image_set = name

    def cast(self, voter, address, message, now=None):
        """One ballot (a parsed JSON message) from `voter` at `address`: (accepted, reason,
        retry_s). Raises ValueError for a malformed one (the caller counts it as bad)."""
        now = time.monotonic() if now is None else now
        if isinstance(message, dict) and "control" in message:
            self.control_attempts += 1
            self.refused += 1
            return False, "the audience page casts ballots; the controls are the VJ's", None
        choice = self._checked(message)
        last = self.cast_at.get(voter)
        if last is not None and now - last < VOTE_INTERVAL_S:
            self.refused += 1
            return False, "one ballot every few seconds", round(VOTE_INTERVAL_S - (now - last), 2)
        if voter not in self.ballots:
            here = sum(1 for b in self.ballots.values() if b["address"] == address)
            if here >= VOTERS_PER_ADDRESS:
                self.refused += 1
                return False, f"{VOTERS_PER_ADDRESS} phones at this address are voting already", None
            if len(self.ballots) >= MAX_VOTERS and not self.sweep(now):
                self.refused += 1
                return False, "the room is full", None
        kept = dict(self.ballots.get(voter, {}).get("choice", {}))
        kept.update(choice)
        kept = {kind: value for kind, value in kept.items() if value is not None}
        self.ballots[voter] = {"choice": kept, "cast": now, "address": address}
        self.cast_at[voter] = now
        self.accepted += 1
        return True, "", None

    def _checked(self, message):
        """{kind: choice or null} with every kind in KINDS and every choice offered."""
        if not isinstance(message, dict) or not message or not set(message) <= set(KINDS):
            raise ValueError(f"expected a ballot {{kind: choice}} with kinds among {', '.join(KINDS)}")
        offered = self.choices()
        for kind, value in message.items():
            if value is not None and (not isinstance(value, str) or value not in offered[kind]):
                raise ValueError(f"{kind} must be one of those offered or null")
        return message

    def sweep(self, now=None):
        """Drop ballots older than VOTE_TTL_S; returns whether any went."""
        now = time.monotonic() if now is None else now
        stale = [voter for voter, ballot in self.ballots.items() if now - ballot["cast"] >= VOTE_TTL_S]
        for voter in stale:
            del self.ballots[voter]
        for voter in [v for v, cast in self.cast_at.items() if now - cast >= VOTE_INTERVAL_S]:
            if voter not in self.ballots:
                del self.cast_at[voter]     # only the interval needs it once the ballot is gone
        return bool(stale)

    # -- what it adds up to -------------------------------------------------------------------

    def tally(self):
        """{"voters": n, "image": {name: count}, "set": {...}, "mood": {...}, "scene": {...}}: every choice
        offered now, by its count (0 included), for the VJ page."""
        offered = self.choices()
        counts = {kind: dict.fromkeys(offered[kind], 0) for kind in KINDS}
        for ballot in self.ballots.values():
            for kind, value in ballot["choice"].items():
                if value in counts[kind]:
                    counts[kind][value] += 1
        return {"voters": len(self.ballots), "image_set": self.image_set, **counts}

    def bias(self, tally=None):
        """What the show leans on: {"image_set", "images": [share of the room behind each image
        of that set, in the show's order], "mood": (intense - calm) / the room, -1..1, "scene":
        {"leader": the allowed scene most voted for (None: no votes), "counts": {name: count},
        "voters": every ballot in the room}}. The room is the ballots cast, or FULL_VOICE when
        fewer; whether the leader's lead is enough is the engine's to say."""
        tally = tally or self.tally()
        images, moods, scenes = tally["image"], tally["mood"], tally["scene"]
        room = max(FULL_VOICE, sum(images.values()))
        mood_room = max(FULL_VOICE, sum(moods.values()))
        leader = max(scenes, key=scenes.get) if any(scenes.values()) else None
        return {"image_set": self.image_set, "images": [count / room for count in images.values()],
                "mood": (moods["intense"] - moods["calm"]) / mood_room,
                "scene": {"leader": leader, "counts": dict(scenes), "voters": tally["voters"]}}

    def welcome(self, voter, on):
        """The first message to a phone: its id, what it may choose, the rules' figures."""
        return json.dumps({"type": "welcome", "voter": voter, "choices": self.choices(), "on": bool(on),
                           "interval_s": VOTE_INTERVAL_S, "refresh_s": REFRESH_S})


class Room:
    """The audience's sockets (GET /audience/ws), in the server's thread, apart from the VJ's
    pages: a phone never gets a frame, the meters or the controls' state, only its welcome, a
    reply to each ballot and the choices when they change. Ballots are counted at once; the
    tally and the bias are brought up to date every TICK_S, so 300 phones cost the show one
    small sum twice a second, not one per ballot.

    audience : the Audience (ballots and tally).
    read_show : () -> (the image set on screen, whether the VJ's switch is on), read from the
        server's controls (the engine's own values, as the VJ pages see them).
    lean : (bias, tally) -> None, called after any change: the server hands the bias to the
        engine (pending_controls) and the tally to the VJ pages.
    """

    def __init__(self, audience, read_show, lean):
        self.audience, self.read_show, self.lean = audience, read_show, lean
        self.sockets = {}           # ws -> the phone's address
        self.bad = Tally("ignored", "a bad audience message", "bad audience messages")
        self.dropped = Tally("dropped", "an audience page", "audience pages")
        self._shown = self._tally = None

    async def socket(self, request):
        if len(self.sockets) >= MAX_SOCKETS:
            return web.Response(status=503, text=f"flowvj: {MAX_SOCKETS} phones are connected already\n")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES, compress=False)
        await ws.prepare(request)
        peer = request.remote or "?"
        voter, bucket = self.audience.voter(request.query.get("voter")), Bucket(MESSAGES_PER_S, MESSAGE_BURST)
        self.sockets[ws] = peer
        try:
            await ws.send_str(self.audience.welcome(voter, self.read_show()[1]))
            async for message in ws:
                if message.type == WSMsgType.ERROR:     # too big or not UTF-8: aiohttp has closed it
                    self.dropped.add(f"{peer}: {message.data}")
                    break
                if not bucket.take():
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
                    self.dropped.add(f"{peer}: more than {MESSAGES_PER_S:g} messages/s")
                    break
                await ws.send_str(self._ballot(voter, peer, message))
        except (ConnectionError, RuntimeError):
            pass                    # the phone went away
        finally:
            del self.sockets[ws]
        return ws

    def _ballot(self, voter, peer, message):
        """The reply to one message: a ballot taken or refused (and why)."""
        accepted, reason, retry_s = False, "not a ballot", None
        if message.type != WSMsgType.TEXT:
            self.bad.add(f"{peer}: a binary message")
        else:
            try:
                ballot = json.loads(message.data)
                accepted, reason, retry_s = self.audience.cast(voter, peer, ballot)
                if isinstance(ballot, dict) and "control" in ballot:
                    self.bad.add(f"{peer}: a control on the audience socket: {message.data[:80]!r}")
            except (ValueError, TypeError, RecursionError, OverflowError) as error:
                self.bad.add(f"{peer}: {message.data[:80]!r}: {error}")
        return json.dumps({"type": "ballot", "accepted": accepted, "reason": reason, "retry_s": retry_s})

    async def tick_forever(self):
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001 - the audience must not end the server
                self.bad.add(f"the tally failed: {type(error).__name__}: {error}")

    def tick(self):
        """Bring the tally and the bias up to date (handed on when they changed), and tell the
        phones what they may choose when the set on screen or the VJ's switch changed."""
        shown = self.read_show()
        if shown[0] != self.audience.image_set:
            self.audience.show_set(shown[0])
        self.audience.sweep()
        tally = {**self.audience.tally(), "on": shown[1]}
        if tally != self._tally:
            self._tally = tally
            self.lean(self.audience.bias(tally), {**tally, "accepted": self.audience.accepted,
                                                  "refused": self.audience.refused,
                                                  "control_attempts": self.audience.control_attempts})
        if shown != self._shown:
            first, self._shown = self._shown is None, shown
            if not first:
                message = json.dumps({"type": "choices", "choices": self.audience.choices(), "on": shown[1]})
                for ws in list(self.sockets):
                    asyncio.ensure_future(_send(ws, message))

    async def close(self):
        for ws in list(self.sockets):
            await ws.close()
        self.bad.flush()
        self.dropped.flush()


async def _send(ws, text):
    try:
        await ws.send_str(text)
    except (ConnectionError, RuntimeError):
        pass


def qr_data_uri(url):
    """The QR code of `url` as an SVG data: URI (segno: pure Python, BSD-3; error correction M, so
    a phone reads it off a projected screen at an angle)."""
    import segno

    return segno.make(url, error="m").svg_data_uri(scale=8, border=2, dark="#000", light="#fff")
