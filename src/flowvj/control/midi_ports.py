"""MIDI ports: found by part of their name on every MIDI system there is, read in a thread of ours.

Ports are looked for on every MIDI system python-rtmidi was built with that is running here
(ALSA's sequencer and JACK on Linux, CoreMIDI, Windows MM), so `--midi-in nano` finds
"nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0" without the client numbers ALSA changes on every
plug-in. MIDI controls (midi.py) and the MIDI clock (clock.py) both read through `MidiPort`.
"""

import contextlib
import math
import os
import sys
import threading
import time

from ..errors import UserError

SYSTEMS = {"LINUX_ALSA": "ALSA", "UNIX_JACK": "JACK", "MACOSX_CORE": "CoreMIDI", "WINDOWS_MM": "Windows MM"}


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 while MIDI systems are probed: ALSA and libjack print several
    lines of their own when the sequencer is absent or no JACK server runs, which is no error
    here (rtmidi raises too, and we say it in one line)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:         # no stderr at all: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def input_ports():
    """(system, port name) of every MIDI source on every running MIDI system, and the names of
    the systems that are not running (e.g. no ALSA sequencer, no JACK server)."""
    import rtmidi

    ports, absent = [], []
    compiled = rtmidi.get_compiled_api()
    with _quiet_stderr():
        for system in SYSTEMS:
            if getattr(rtmidi, f"API_{system}") not in compiled:
                continue
            try:
                probe = rtmidi.MidiIn(getattr(rtmidi, f"API_{system}"))
            except rtmidi.SystemError:       # the system is down (no sequencer, no server)
                absent.append(SYSTEMS[system])
                continue
            ports += [(system, name) for name in dict.fromkeys(probe.get_ports())]
            probe.delete()
    return ports, absent


def ports_listing(ports, absent):
    """The ports as a user error or `flowvj devices` names them, in one line."""
    named = "; ".join(f"{name} ({SYSTEMS[api]})" for api, name in ports) or "none"
    down = f" ({', '.join(absent)} not running)" if absent else ""
    return named + down


def find_input(fragment, flag="--midi-in"):
    """The one (system, name) whose name is `fragment` or holds it (ignoring case; one port seen
    on two systems, as a bridge shows it, is the first system's); else a UserError in one line
    listing the ports there are."""
    ports, absent = input_ports()
    matches = [p for p in ports if p[1] == fragment] or [p for p in ports if fragment.lower() in p[1].lower()]
    if len({name for _, name in matches}) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"{flag} {fragment}: no MIDI input port matches; the ports here: "
                        f"{ports_listing(ports, absent)}")
    raise UserError(f"{flag} {fragment}: matches {len(matches)} MIDI ports ({ports_listing(matches, [])}); "
                    "give more of the name")


class MidiPort:
    """One MIDI input port, read by a thread of ours that calls `on_message(message, arrival_s)`
    with each mido Message and when it arrived (perf_counter seconds).

    Why not rtmidi's callback (mido's way): on JACK, rtmidi runs it in JACK's process thread,
    where Python's callback must wait for the GIL. A frame loop holding it for a few ms made
    that thread miss its period, and JACK's xruns then repeated one event and lost the next.
    Here rtmidi's thread only queues the bytes, and this thread polls the queue every POLL_S.

    Arrival times come from rtmidi's own timestamps (the gaps between messages, taken as they
    arrived in rtmidi's thread), placed on perf_counter by the earliest any message could have
    arrived (a poll can only see a message after it arrived): so polling and the GIL delay
    when a message is read, never the time it is stamped with. DRIFT_PER_S lets that anchor
    follow a MIDI clock that runs fast against perf_counter."""

    POLL_S = 0.001
    DRIFT_PER_S = 1e-4

    def __init__(self, fragment, on_message, flag="--midi-in", timing=False):
        import rtmidi

        system, self.name = find_input(fragment, flag)
        try:
            with _quiet_stderr():
                self._in = rtmidi.MidiIn(getattr(rtmidi, f"API_{system}"), "flowvj")
                self._in.ignore_types(sysex=True, timing=not timing, active_sense=True)
                self._in.open_port(self._in.get_ports().index(self.name), "in")
        except (rtmidi.RtMidiError, ValueError) as error:   # unplugged between listing and opening
            raise UserError(f"{flag} {fragment}: cannot open MIDI port {self.name!r} ({error})") from None
        self.on_message = on_message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="flowvj-midi", daemon=True)
        self._thread.start()

    def _read(self):
        import mido

        anchor, elapsed, polled = math.inf, 0.0, time.perf_counter()
        while not self._stop.is_set():
            got = self._in.get_message()
            now = time.perf_counter()
            if got is None:
                time.sleep(self.POLL_S)
                continue
            data, gap_s = got
            elapsed += gap_s
            anchor = min(anchor + (now - polled) * self.DRIFT_PER_S, now - elapsed)
            polled = now
            try:
                message = mido.Message.from_bytes(data)
            except ValueError:      # a broken message from the controller: skip it
                continue
            self.on_message(message, anchor + elapsed)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._in.close_port()
        self._in.delete()


def ports_table():
    """`flowvj devices`' MIDI section: one line per input port, with its system."""
    ports, absent = input_ports()
    lines = ["MIDI inputs (--midi-in, --midi-clock: part of a name):"]
    lines += [f"  {name}  ({SYSTEMS[api]})" for api, name in ports] or ["  none found"]
    if absent:
        lines.append(f"  ({', '.join(absent)} not running)")
    return "\n".join(lines)
