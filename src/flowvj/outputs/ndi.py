"""The show as an NDI source on the network, for Resolume, OBS, TouchDesigner, vMix (`--ndi NAME`).

    ndi = NdiOutput("flowvj", size=(1280, 720), fps=60.0)   # announced as "HOST (flowvj)"
    ndi.show(frame, meters)                                 # every frame; returns at once
    ndi.close()

NOT FREE SOFTWARE: NDI's runtime (libndi) is Vizrt's, under the NDI SDK licence
(http://ndi.link/ndisdk_license), not an open licence. It comes only with the optional extra
`pip install 'flowvj[ndi]'`, which installs ndi-python (MIT bindings by Naoto Kondo) whose wheel
bundles libndi 6.3.2. flowvj never requires it: without it, --ndi is one UserError saying how to
install it. NDI® is a registered trademark of Vizrt NV; see https://ndi.video.

Why ndi-python and not cyndilib (both have Python 3.11 linux x86_64 wheels with libndi inside):
it is the SDK's C API one to one, with one dependency (numpy), and its finder takes `extra_ips`,
which the tests need (below). It links the system's libavahi-client3 (Debian: apt install
libavahi-client3); without it the import fails and --ndi says so.

Never stalling the frame loop: show() copies the frame into a one-frame slot and returns. The
frames come from the compositor (compose.py) at the show's --size: with --ndi-size the same
(1280x720 by default for both) show() is a 2.7 MB copy (~0.3 ms) and the sender thread only
converts RGB to RGBX (NDI's 4-byte layout, ~2 ms, no scaling) and sends it with
NDIlib_send_send_video_v2 (synchronous in that thread, which releases the GIL meanwhile). A frame
that arrives while the thread is busy replaces the waiting one (latest wins, counted in
`dropped`): frames are dropped, never queued, so a slow network or a busy CPU cannot build up
latency. While no receiver is connected nothing is converted or sent at all (`unwatched`), so an
idle --ndi costs nothing.

Another --ndi-size is scaled in the sender thread, framed exactly as the rendered video
(upscale.fill_box: aspect-filling, centre crop), bicubic, straight into RGBX so nothing is
repacked: measured at 128x72 -> 1280x720 (before the compositor, when frames came at the
generation size) with a receiver connected, on this project's 2-core AMD EPYC VM under load, the
upscale took 16.8 ms and the send 4.6 ms (NDI's SpeedHQ compression runs inside the call) of
CPU, ~1.6 ms more in NDI's own threads, none of it on the frame loop's thread. So give --ndi-size
the show's --size unless the receiver needs another. Each frame carries the show's frame rate as
NDI's N/D fraction (60 -> 60/1, 29.97 -> 30000/1001): receivers use it to pace and to label the
source.

Discovery: NDI sources are found by mDNS. On Linux libndi announces through avahi-daemon (over
D-Bus) and has no mDNS of its own: without a running avahi-daemon the source is not announced,
though a receiver can still add this machine by IP (NDI Access Manager: remote sources). The
tests therefore run sender and receiver in a private network namespace and find the source by
unicast (`extra_ips=127.0.0.1`), so nothing leaves the machine and no daemon is needed.
"""

import threading
from fractions import Fraction

import numpy as np
from PIL import Image

from ..errors import UserError
from ..upscale import fill_box

INSTALL = ("--ndi needs NDI, which is not free software and is not installed: "
           "pip install 'flowvj[ndi]' (ndi-python, bundling Vizrt's NDI runtime under its own licence)")
NTSC_RATES = (24, 30, 48, 60, 120)  # sent as N*1000/1001 when --fps is 23.976, 29.97, ...


def load_ndi():
    """The NDIlib module, initialised; a UserError saying what to install when it cannot be."""
    try:
        import NDIlib
    except ModuleNotFoundError as error:
        if error.name != "NDIlib":
            raise
        raise UserError(INSTALL) from None
    except (ImportError, OSError) as error:  # the wheel is there, a library it links is not
        raise UserError(f"--ndi: the NDI runtime did not load ({error}); on Debian/Ubuntu it needs "
                        f"libavahi-client3: apt install libavahi-client3") from None
    if not NDIlib.initialize():
        raise UserError("--ndi: the NDI runtime refused to start on this machine (it needs a CPU with SSE4.2)")
    return NDIlib


def frame_rate_fraction(fps):
    """fps -> (N, D) as NDI wants it: the NTSC rates as N*1000/1001, others the nearest N/D, D <= 1000."""
    for rate in NTSC_RATES:
        if abs(fps - rate * 1000 / 1001) < 0.005:
            return rate * 1000, 1001
    fraction = Fraction(float(fps)).limit_denominator(1000)
    return fraction.numerator, fraction.denominator


def rgbx_frame(frame, size):
    """uint8 (h, w, 3) RGB -> uint8 (H, W, 4) RGBX filling `size` = (W, H) as upscale.upscale
    frames it (aspect-filling, centre crop, bicubic); a frame of that size already (the show's
    composed frame, usually) is only converted. Converted to RGBX first, at the frame's size, so
    a scaled image comes out of the resampler already in NDI's layout."""
    h, w = frame.shape[:2]
    image = Image.fromarray(frame, "RGB").convert("RGBX")
    if (w, h) != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BICUBIC, box=fill_box((w, h), size))
    return np.asarray(image)


class NdiOutput:
    """An NDI source named `name` sending each shown frame at `size` = (width, height), `fps`
    as its frame-rate metadata. Counts: `sent`, `dropped` (replaced before the thread took them),
    `unwatched` (taken while no receiver was connected, not sent)."""

    def __init__(self, name, size=(1280, 720), fps=60.0):
        if not str(name).strip():
            raise UserError("--ndi: expected a source name, e.g. --ndi flowvj")
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps)
        self._ndi = ndi = load_ndi()
        settings = ndi.SendCreate()
        settings.ndi_name = str(name)
        settings.clock_video = False  # the live loop paces the frames; NDI must not block on its clock
        self._sender = ndi.send_create(settings)
        if self._sender is None:
            raise UserError(f"--ndi: NDI could not create a source named {name!r}")
        self.source_name = ndi.send_get_source_name(self._sender).ndi_name  # "HOST (name)"
        self._video = ndi.VideoFrameV2()
        self._video.FourCC = ndi.FOURCC_VIDEO_TYPE_RGBX
        self._video.frame_format_type = ndi.FRAME_FORMAT_TYPE_PROGRESSIVE
        self.frame_rate = frame_rate_fraction(self.fps)
        self._video.frame_rate_N, self._video.frame_rate_D = self.frame_rate
        self.sent = self.dropped = self.unwatched = 0
        self._slot = None  # the newest frame not yet taken by the thread
        self._closing = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._send_frames, name="flowvj-ndi", daemon=True)
        self._thread.start()

    def show(self, frame, meters=None):
        """Hand the frame (uint8 (h, w, 3) RGB) to the sender thread; never waits for it."""
        frame = np.array(frame, dtype=np.uint8, copy=True)  # the loop may reuse its buffer
        with self._ready:
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self._ready.notify()

    def connections(self):
        """How many receivers are connected now."""
        return self._ndi.send_get_no_connections(self._sender, 0)

    def _send_frames(self):
        while True:
            with self._ready:
                while self._slot is None and not self._closing:
                    self._ready.wait()
                if self._closing:
                    return
                frame, self._slot = self._slot, None
            if self.connections() == 0:
                self.unwatched += 1
                continue
            self._video.data = rgbx_frame(frame, self.size)
            self._ndi.send_send_video_v2(self._sender, self._video)
            self.sent += 1

    def close(self):
        """Stop the thread (a send in progress finishes) and withdraw the source."""
        if self._sender is None:
            return
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout=5.0)
        self._ndi.send_destroy(self._sender)
        self._sender = None
        self._ndi.destroy()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
