"""What the live loop gives an output each frame, and what an output may send back: the contract
between show/live/loop.py and everything in outputs/ (the window, the page, NDI, the recorder,
OSC telemetry, MIDI learn).

An output implements `show` and `close`; every other method is optional, and `attach` binds the
ones it has once, when the show starts, so that the loop calls plain functions each frame rather
than probing with hasattr. What an output sends back goes only through the values it returns
(`poll`, `pending_controls`), which the loop posts on the control bus: no output calls into the
loop.
"""

from typing import Any, Callable, Iterable, NamedTuple, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Output(Protocol):
    """Every output: a frame (uint8 (H, W, 3) at the show's output size, made by the compositor,
    compose.py; brightness and blackout applied) and the meters (a dict: fps, tempo_bpm, rms, bands, gen_size, mode, beat, notice,
    ...) once a frame; `close` once, on every way out of the show."""

    def show(self, frame: np.ndarray, meters: dict) -> None: ...

    def close(self) -> None: ...


class Listener(Protocol):
    """The optional rest, each called from the loop's thread:
      hear(samples, audio_time_s)          the audio analysed this frame (the recorder muxes it);
      poll() -> keys                       window keys pressed (names, or "scene:N");
      pending_controls() -> [(name, value)]   controls from the page;
      update_controls(values)              the controls' values after any change (the page);
      control_applied(name, value, caption)   after each control the loop applied (MIDI learn
                                           arms on it; telemetry reports state from it);
      handles(name) -> bool, handle(name, value) -> caption   a control of the output's own that
                                           the loop does not know (MIDI learn's "midi_learn").
    """

    def hear(self, samples: np.ndarray, audio_time_s: float) -> None: ...

    def poll(self) -> Iterable[Any]: ...

    def pending_controls(self) -> Iterable[tuple]: ...

    def update_controls(self, values: dict) -> None: ...

    def control_applied(self, name: str, value: Any, caption: str) -> None: ...

    def handles(self, name: str) -> bool: ...

    def handle(self, name: str, value: Any) -> Any: ...


def _nothing(*args):
    return None


def _none_pending(*args):
    return ()


class Attached(NamedTuple):
    """One output with its methods bound (a no-op where it has none)."""
    output: Any
    name: str
    show: Callable
    hear: Callable
    poll: Callable
    pending_controls: Callable
    update_controls: Callable
    control_applied: Callable
    handles: Callable
    handle: Callable


def attach(output):
    """`output` (an Output, or a listener with some of Listener's methods: MIDI learn has no
    show) bound to the contract; a TypeError naming it if it has none of the methods."""
    bound = {name: getattr(output, name, None) for name in Attached._fields[2:]}
    if not any(callable(method) for method in bound.values()):
        raise TypeError(f"{type(output).__name__} is not an output: it has none of {', '.join(bound)}")
    defaults = {"poll": _none_pending, "pending_controls": _none_pending, "handles": lambda name: False}
    return Attached(output, type(output).__name__,
                    **{name: method if callable(method) else defaults.get(name, _nothing)
                       for name, method in bound.items()})
