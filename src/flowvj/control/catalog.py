"""Every live control a show has, in one table: its name, the type of its value, its range and
what it does. OSC addresses (/flowvj/<name>), MIDI mappings and `flowvj osc-addresses` are made
from it, so an input can never offer a control the engine does not have, or a range it refuses.
The browser page keeps its own copy of the numeric ranges (outputs import nothing upstream);
tests hold the two equal.
"""

from typing import NamedTuple

MODES = ("weighted", "magellan", "explore")  # the navigator's modes (show/navigate.py builds one class each)
INTERPOLATIONS = ("linear", "slerp")        # how the navigator moves between two latents


class Control(NamedTuple):
    name: str
    kind: str            # "f" float, "i" int (0/1 switches), "s" string, "" an action with no value
    low: float = None
    high: float = None
    choices: tuple = ()
    help: str = ""


CONTROLS = {c.name: c for c in (
    Control("mode", "s", choices=MODES, help="how the music moves through the images"),
    Control("next_mode", "", help="the next mode, cross-faded"),
    Control("next_image", "", help="head for the next image, cross-faded"),
    Control("image_set", "s", help="switch to a named image set (loaded in the background, cross-faded)"),
    Control("scene", "s", help="recall a named scene"),
    Control("temperature", "f", 0.01, 2.0, help="weighted mode: low = the loudest band's image, high = a mix"),
    Control("speed", "f", 0.0, 4.0, help="the navigator's clock: 0 freezes the motion, 2 is twice as fast"),
    Control("sensitivity", "f", 0.0, 4.0, help="a gain on the levels the navigator sees"),
    Control("brightness", "f", 0.0, 1.0, help="the picture's brightness (1 = as drawn)"),
    Control("detail", "f", 0.0, 2.0, help="detail the compositor adds at the output size (--detail): "
                                          "0 none, 1 the originals' own, 2 twice"),
    Control("blackout", "i", 0, 1, help="1 fades to black, 0 fades back"),
    Control("freeze", "i", 0, 1, help="1 holds the picture, 0 lets it move again"),
    Control("audience", "i", 0, 1, help="with serve --audience: 1 lets the audience's votes lean the show, "
                                        "0 turns their influence off (the votes are still counted)"),
    Control("gen_size", "s", help="draw at this generation size (WxH, e.g. 192x108), built in the "
                                  "background; with --gen-size auto the size policy adapts from there"),
    Control("midi_learn", "s", help="arm MIDI learn: the next CC or note moved is bound to this control "
                                    "(a name, or name=value for a button: mode=weighted, blackout=1; "
                                    "\"\" disarms)"),
)}


def check_value(name, value):
    """The value `name` takes, typed and range-checked; ValueError naming what was expected."""
    control = CONTROLS.get(name)
    if control is None:
        raise ValueError(f"unknown control {name!r}; expected one of {', '.join(CONTROLS)}")
    if control.kind == "":
        return None
    if control.kind == "s":
        if not isinstance(value, str) or (control.choices and value not in control.choices):
            expected = f"one of {', '.join(control.choices)}" if control.choices else "a name"
            raise ValueError(f"{name} expects {expected}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} expects a number in {control.low:g}..{control.high:g}, got {value!r}")
    if not control.low <= value <= control.high:
        raise ValueError(f"{name} expects a number in {control.low:g}..{control.high:g}, got {value!r}")
    return int(value) if control.kind == "i" else float(value)
