"""MIDI in: a DJ's controller steers the show (CCs, notes, program changes, MIDI learn).

A port is found by part of its name (control/midi_ports.py) and read in a thread of its own;
`MidiInput` turns each message into controls of control/catalog.py through a `Mapping` read from
a TOML file and posts them on the live loop's ControlBus (source "midi"), as OSC does: the
engine applies them in its own thread.

The mapping file (`--midi-map`), one `[[map]]` table per binding:

    [[map]]
    cc = 7               # or note = 36; 0..127
    channel = 1          # 1..16; leave it out to take any channel
    control = "speed"    # a name from `flowvj osc-addresses`
    [[map]]
    note = 37
    control = "mode"
    value = "weighted"   # what a name control (mode, image_set, scene) is set to
    [[map]]
    note = 38
    control = "blackout"
    value = 1            # a button that sets a number or switch control to this value

How a message drives each kind of control (CONTROLS' kind):
    float   CC value 0..127 (a note-on's velocity) scaled onto the control's low..high;
    switch  note-on = 1, note-off = 0; a CC is 1 from 64 up, 0 below (posted when it flips);
    action  (next_image, next_mode) fired by a note-on, or a CC rising through 64 (a button);
    name    set to the binding's `value` like an action fires;
    and a float or switch bound with a `value` is set to it like an action fires (a pad for
    blackout = 1 and another for blackout = 0; a button for speed = 1).
Program change N (the 1..128 a controller shows; 0..127 on the wire) posts ("scene", N), the
int: the live loop recalls the scene at place N of the scenes file, as keys 1-9 do.

MIDI learn: the control "midi_learn" with a control's name as its value (name=value for a name
control, or for a button that sets a number: "blackout=1"; "" disarms) arms it: the live loop
hands it to `MidiInput.handle`. Then the next CC or note-on that arrives is bound to that control
(on its own channel, in the place of any binding of the same CC or note) instead of being
applied, and the file is rewritten atomically through tomlkit, which keeps what the user wrote:
comments, blank lines and the order of the bindings; only the learned binding's table changes.
"""

import logging
import os
import re
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from ..atomic import atomic_path
from ..errors import UserError
from .catalog import CONTROLS, check_value
from .midi_ports import MidiPort

log = logging.getLogger(__name__)

LEARN = "midi_learn"    # the bus control that arms MIDI learn
LEARNED = "midi_learned"    # posted when a binding was learned: the loop announces it


def default_map_path():
    """Where MIDI learn saves when no --midi-map is given: $XDG_CONFIG_HOME/flowvj/midi.toml."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "flowvj" / "midi.toml"


# -- the mapping -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Binding:
    """One controller knob, fader or pad bound to one control. `kind` "cc" or "note", `number`
    0..127, `channel` 1..16 or None (any), `value` what the button sets the control to (a name
    control's name; a number or switch's number) or None when the controller gives it."""
    kind: str
    number: int
    control: str
    channel: int = None
    value: object = None

    def matches(self, kind, number, channel):
        return self.kind == kind and self.number == number and self.channel in (None, channel)

    def key(self):
        """What one knob, fader or pad is: a binding learned for it replaces any with this key."""
        return self.kind, self.number, self.channel

    def table(self, old=None):
        """This binding as a [[map]] table; given the table `old` of the same key, its keys'
        order, comments and blank lines are kept and only control and value change."""
        keys = {self.kind: self.number, "channel": self.channel, "control": self.control,
                "value": self.value}
        table = tomlkit.table()
        for key, item in old.value.body if old is not None else []:
            if key is None:
                table.add(item)                         # a comment or a blank line
            elif key.key == "control":
                table.add(key, self.control)
                if self.value is not None:
                    table.add("value", self.value)
            elif key.key != "value":
                table.add(key, item)
        for key, value in keys.items():
            if key not in table and value is not None:
                table.add(key, value)
        # the old header's own comment and spacing; a blank line before a new table
        vars(table.trivia).update(vars(old.trivia) if old is not None else {"indent": "\n"})
        return table

    def text(self):
        where = f"{'CC' if self.kind == 'cc' else 'note'} {self.number}"
        where += f" ch {self.channel}" if self.channel is not None else ""
        return f"{where} -> {self.control}" + (f" = {self.value}" if self.value is not None else "")


def binding_from(entry):
    """A Binding from one [[map]] table; ValueError saying what is wrong with it."""
    if not isinstance(entry, dict):
        raise ValueError("expected a table with cc or note, and control")
    unknown = set(entry) - {"cc", "note", "channel", "control", "value"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}; expected cc or note, channel, control, value")
    kinds = [kind for kind in ("cc", "note") if kind in entry]
    if len(kinds) != 1:
        raise ValueError("expected exactly one of cc = N or note = N")
    kind, number, channel = kinds[0], entry[kinds[0]], entry.get("channel")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 127:
        raise ValueError(f"{kind} expects a number 0..127, got {number!r}")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)
                                or not 1 <= channel <= 16):
        raise ValueError(f"channel expects 1..16, got {channel!r}")
    name = entry.get("control")
    if name not in CONTROLS:
        raise ValueError(f"unknown control {name!r}; expected one of {', '.join(CONTROLS)}")
    value = entry.get("value")
    kind_of = CONTROLS[name].kind
    if kind_of == "s" and value is None:
        raise ValueError(f"{name} needs value = \"...\" (what the button sets it to)")
    if kind_of == "" and value is not None:
        raise ValueError(f"{name} takes no value (it is an action)")
    if value is not None:
        value = check_value(name, value)
    return Binding(kind, number, name, channel, value)


def load_mapping(path, flag="--midi-map"):
    """The bindings of a mapping file (none when it does not exist yet: MIDI learn creates it);
    a malformed one is a UserError in one line naming the file and the line or the entry."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
        table = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UserError(f"{flag} {path}: cannot read it ({reason})") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{flag} {path}: not valid TOML: {error}") from None
    unknown = set(table) - {"map"}
    if unknown:
        raise UserError(f"{flag} {path}: unknown table {sorted(unknown)[0]!r}; expected [[map]] entries")
    entries = table.get("map", [])
    if not isinstance(entries, list):
        raise UserError(f"{flag} {path}: map must be [[map]] tables, one per binding")
    headers = [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"\s*\[\[\s*map\s*\]\]", line)]
    bindings = []
    for index, entry in enumerate(entries):
        try:
            bindings.append(binding_from(entry))
        except ValueError as error:
            where = f"line {headers[index]}" if len(headers) == len(entries) else f"entry {index + 1}"
            raise UserError(f"{flag} {path}: [[map]] at {where}: {error}") from None
    return bindings


HEADER = ("flowvj MIDI mapping (flowvj play --midi-map): one [[map]] per binding; MIDI learn",
          "adds to it, keeping your comments and order.")


def save_mapping(path, bindings):
    """Make the file at `path` hold `bindings`, in their order, atomically (a crash never leaves
    half a file). What the user wrote stays: a table whose binding is kept is left as it is, one
    whose knob was learned again is rewritten in place, new ones go at the end. A file that is no
    longer valid TOML (edited during the show) is left alone: ValueError."""
    path = Path(path)
    if path.exists():
        try:
            document = tomlkit.parse(path.read_text(encoding="utf-8"))
        except tomlkit.exceptions.ParseError as error:
            raise ValueError(f"{path} is not valid TOML now ({error}); not overwritten") from None
    else:
        document = tomlkit.document()
        for line in HEADER:
            document.add(tomlkit.comment(line))
    tables = document.get("map")
    if not isinstance(tables, tomlkit.items.AoT):       # none yet, or written as an inline array
        tables = document["map"] = tomlkit.aot()
    _sync(tables, bindings)
    with atomic_path(path) as tmp:
        tmp.write_text(tomlkit.dumps(document), encoding="utf-8")


def _sync(tables, bindings):
    """Edit the array of [[map]] tables in place until it holds `bindings` (see save_mapping)."""
    wanted, dropped = list(bindings), []
    for index, table in enumerate(list(tables)):
        try:
            have = binding_from(table.unwrap())
        except ValueError:
            have = None
        same_knob = [b for b in wanted if have is not None and b.key() == have.key()]
        if have in wanted:
            wanted.remove(have)
        elif same_knob:                                 # learned again: in the old one's place
            tables[index] = same_knob[0].table(old=table)
            wanted.remove(same_knob[0])
        else:
            dropped.append(index)
    for index in reversed(dropped):                     # from the end, so the others keep their index
        del tables[index]
    for binding in wanted:
        tables.append(binding.table())


def _scaled(control, value_0_127):
    return control.low + (control.high - control.low) * value_0_127 / 127.0


class Mapping:
    """Messages -> controls through the bindings; it remembers each CC's last value, so a CC
    switch is posted when it flips and a CC button fires once per press, not once per message."""

    def __init__(self, bindings=()):
        self.bindings = list(bindings)
        self._last_cc = {}      # (channel, number) -> last value

    def add(self, binding):
        """Bind, in the place of the first binding of the same CC or note on the same channel (the
        others go), or last: the order save_mapping keeps in the file."""
        same = [i for i, b in enumerate(self.bindings) if b.key() == binding.key()]
        place = same[0] if same else len(self.bindings)
        kept = [b for i, b in enumerate(self.bindings) if i not in same]
        self.bindings = kept[:place] + [binding] + kept[place:]

    def controls(self, message):
        """The (name, value) changes one mido message asks for, in binding order."""
        kind = message.type
        if kind == "program_change":
            return [("scene", message.program + 1)]
        if kind not in ("control_change", "note_on", "note_off"):
            return []
        channel = message.channel + 1
        if kind == "control_change":
            number, value = message.control, message.value
            previous = self._last_cc.get((channel, number), 0)
            self._last_cc[(channel, number)] = value
            changes = []
            for b in self.bindings:
                if b.matches("cc", number, channel):
                    change = _cc_change(CONTROLS[b.control], b, value, previous)
                    if change is not None:
                        changes.append(change)
            return changes
        pressed = kind == "note_on" and message.velocity > 0
        changes = []
        for b in self.bindings:
            if b.matches("note", message.note, channel):
                change = _note_change(CONTROLS[b.control], b, pressed, message.velocity)
                if change is not None:
                    changes.append(change)
        return changes


def _cc_change(control, binding, value, previous):
    on, was_on = value >= 64, previous >= 64
    if control.kind == "" or binding.value is not None:     # a button: on its press, an action or a set
        return (control.name, binding.value) if on and not was_on else None
    if control.kind == "f":
        return control.name, _scaled(control, value)
    return (control.name, int(on)) if on != was_on else None


def _note_change(control, binding, pressed, velocity):
    if control.kind == "" or binding.value is not None:
        return (control.name, binding.value) if pressed else None
    if control.kind == "i":
        return control.name, int(pressed)
    return (control.name, _scaled(control, velocity)) if pressed else None


def learn_target(value):
    """midi_learn's value, "name" or "name=value" -> (control, the value its button sets, or None
    when the controller gives it) or None to disarm; ValueError saying what was expected."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    name, _, setting = text.partition("=")
    name, setting = name.strip(), setting.strip() or None
    if name not in CONTROLS:
        raise ValueError(f"unknown control {name!r}; expected one of {', '.join(CONTROLS)}")
    kind = CONTROLS[name].kind
    if kind == "s" and setting is None:
        raise ValueError(f"{name} is learned with its value: {name}=...")
    if kind == "" and setting is not None:
        raise ValueError(f"{name} takes no value (it is an action)")
    if setting is not None and kind in ("f", "i"):
        try:
            setting = float(setting)
        except ValueError:
            pass                # check_value names what was expected
    return name, None if setting is None else check_value(name, setting)


# -- the input ---------------------------------------------------------------------------------

class MidiInput:
    """A MIDI controller on the port `port` names (part of a name), posting its controls to
    `bus` through the mapping in `map_path`. The mapping is read and the port opened in the
    constructor, so a malformed file or an unknown port is a UserError before anything slow.

    MIDI learn comes in as a control the engine does not apply itself: the live loop offers it
    to each output with `handles(name)` (this one handles "midi_learn"), then calls
    `handle(name, value)` in its own thread, which returns the caption to show. `received` and
    `posted` count messages; `learned` is the last Binding learned, `saves` the files written."""

    def __init__(self, bus, port, map_path=None, flag="--midi-in", map_flag="--midi-map"):
        self.bus, self.map_path = bus, Path(map_path) if map_path else default_map_path()
        self.mapping = Mapping(load_mapping(self.map_path, map_flag))
        self.received = self.posted = self.saves = 0
        self.learned, self._armed = None, None
        self._lock, self._save_lock = threading.Lock(), threading.Lock()
        self._port = MidiPort(port, self._receive, flag)
        self.name = self._port.name

    @property
    def armed(self):
        """What MIDI learn is armed for ("name" or "name=value"), "" when not: the page shows it."""
        with self._lock:
            target = self._armed
        if target is None:
            return ""
        return target[0] if target[1] is None else f"{target[0]}={target[1]}"

    def handles(self, name):
        return name in (LEARN, LEARNED)

    def handle(self, name, value):
        """Arm (or with "" disarm) MIDI learn; the caption, or None when refused (logged). LEARNED
        (posted by _receive) announces a binding just learned: the pages then show learn is over."""
        if name == LEARNED:
            return f"MIDI learn: {value}"
        try:
            target = learn_target(value)
        except ValueError as error:
            log.warning("MIDI learn: ignored %r: %s", value, error)
            return None
        with self._lock:
            self._armed = target
        if target is None:
            return "MIDI learn off"
        setting = f" = {target[1]}" if target[1] is not None else ""
        return f"MIDI learn: move a control for {target[0]}{setting}"

    def _receive(self, message, arrival_s):
        """The port's thread: post, never wait on a file."""
        self.received += 1
        if self._learn(message):
            self.bus.post(LEARNED, self.learned.text(), source="midi")
            threading.Thread(target=self._save, name="flowvj-midi-learn", daemon=True).start()
            return
        with self._lock:
            changes = self.mapping.controls(message)
        for name, value in changes:
            self.bus.post(name, value, source="midi")
            self.posted += 1

    def _learn(self, message):
        """Bind the armed control to this message's CC or note (it is then not applied);
        whether it did."""
        with self._lock:
            if self._armed is None:
                return False
            if message.type == "control_change":
                kind, number = "cc", message.control
            elif message.type == "note_on" and message.velocity > 0:
                kind, number = "note", message.note
            else:
                return False
            (name, value), self._armed = self._armed, None
            self.learned = Binding(kind, number, name, message.channel + 1, value)
            self.mapping.add(self.learned)
            return True

    def _save(self):
        with self._save_lock:      # one writer at a time, each with the newest bindings
            with self._lock:
                bindings, learned = list(self.mapping.bindings), self.learned
            try:
                save_mapping(self.map_path, bindings)
            except (OSError, ValueError) as error:  # a read-only folder, a file broken by hand: the
                log.warning("MIDI learn: %s (not saved to %s: %s)",  # binding holds until the end
                            learned.text(), self.map_path, getattr(error, "strerror", None) or error)
                return
            self.saves += 1
        log.info("MIDI learn: %s (saved to %s)", learned.text(), self.map_path)

    def close(self):
        self._port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
