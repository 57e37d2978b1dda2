"""Everything that steers a live show enters here: window keys, the page, later OSC, MIDI, Link."""

from .bus import ControlBus, ControlEvent

__all__ = ["ControlBus", "ControlEvent"]
