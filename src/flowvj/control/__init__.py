"""Everything that steers a live show enters here: window keys, the page, later OSC, MIDI, Link."""

from .bus import ControlBus, ControlEvent
from .catalog import CONTROLS, check_value

__all__ = ["CONTROLS", "ControlBus", "ControlEvent", "check_value"]
