"""Sound devices through sounddevice (PortAudio), imported inside functions.

Decoding and offline renders must work on a machine without libportaudio2, so nothing here
imports sounddevice at module level; asking for a device there is a one-line UserError saying
what to install. `devices_table()` backs `flowvj devices`; `find_device` turns the user's
`--device` text (index, or part of a name) into a PortAudio index.
"""

import contextlib
import os
from dataclasses import dataclass

from ..errors import UserError


def load_sounddevice():
    """sounddevice, imported on first use; a UserError if PortAudio is missing."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:
        raise UserError(f"sound devices need PortAudio, which could not be loaded ({e}); install "
                        "libportaudio2 (Debian/Ubuntu: apt-get install libportaudio2)") from None
    return sounddevice


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as `flowvj devices` shows it."""
    index: int
    name: str
    hostapi: str
    input_channels: int
    output_channels: int
    default_rate: float
    default_input: bool
    default_output: bool


def list_devices():
    """Every PortAudio device, with the default input and output marked."""
    sd = load_sounddevice()
    hostapis = sd.query_hostapis()
    defaults = [sd.query_devices(kind=k)["index"] if _has_default(sd, k) else -1
                for k in ("input", "output")]
    return [DeviceInfo(d["index"], d["name"], hostapis[d["hostapi"]]["name"],
                       d["max_input_channels"], d["max_output_channels"],
                       d["default_samplerate"], d["index"] == defaults[0], d["index"] == defaults[1])
            for d in sd.query_devices()]


def _has_default(sd, kind):
    try:
        sd.query_devices(kind=kind)
        return True
    except sd.PortAudioError:
        return False


def devices_table():
    """Inputs and outputs as `flowvj devices` prints them; `*` marks the defaults."""
    devices = list_devices()
    lines = []
    for kind in ("input", "output"):
        chosen = [d for d in devices if getattr(d, f"{kind}_channels") > 0]
        lines.append(f"{kind}s (* = default):")
        lines += [f"  {'*' if getattr(d, f'default_{kind}') else ' '} {d.index:>3}  {d.name}  "
                  f"({getattr(d, f'{kind}_channels')} ch, {d.default_rate:.0f} Hz, {d.hostapi})"
                  for d in chosen] or ["    (none)"]
    return "\n".join(lines)


def find_device(spec=None, kind="input"):
    """Index of the `kind` ('input' or 'output') device named by `spec`: None for the default,
    an index, or a case-insensitive part of a name (an exact name wins over partial matches)."""
    candidates = [d for d in list_devices() if getattr(d, f"{kind}_channels") > 0]
    listing = _listing(candidates) or "none"
    if spec is None or str(spec).strip() == "":
        default = [d for d in candidates if getattr(d, f"default_{kind}")]
        if not default:
            raise UserError(f"no default {kind} device; choose one of: {listing}")
        return default[0].index
    text = str(spec).strip()
    if text.isdigit():
        if int(text) not in [d.index for d in candidates]:
            raise UserError(f"{kind} device {text}: no {kind} device has that index; "
                            f"choose one of: {listing}")
        return int(text)
    exact = [d for d in candidates if d.name.lower() == text.lower()]
    matches = exact or [d for d in candidates if text.lower() in d.name.lower()]
    if not matches:
        raise UserError(f"{kind} device {text!r} matches no {kind} device; choose one of: {listing}")
    if len(matches) > 1:
        raise UserError(f"{kind} device {text!r} matches several {kind} devices: {_listing(matches)}; "
                        "give more of the name, or the index")
    return matches[0].index


def _listing(devices):
    # The host API too: on Windows one card appears once per API (MME, DirectSound, WASAPI).
    return ", ".join(f"[{d.index}] {d.name} ({d.hostapi})" for d in devices)


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 for a moment: PortAudio's ALSA backend prints several lines for
    each failed open, and a reconnect attempt every second would flood the show's terminal
    (sounddevice does the same around Pa_Initialize)."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
