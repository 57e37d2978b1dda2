"""The command line: every subcommand, its flags, their types and defaults (what --help prints)."""

import argparse

from . import commands

DESCRIPTION = """Live visuals for your DJ set. Point flowvj at a few images you like and at the music
(a track, or your mixer's line-in): every frame the music moves a point between your images and a
normalizing flow (Real-NVP) draws it, in time with the beat. Start with `flowvj play` (a window),
`flowvj serve` (a browser page with the controls) or `flowvj live --device NAME` (line-in);
`flowvj render TRACK -o video.mp4` makes a music video."""


ENCODER_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                   "slower", "veryslow")


def _osc_flag(parse_name):
    """An OSC flag's parser from control/osc.py (imported only when the flag is given): its
    ValueError becomes argparse's one line naming the flag."""
    def parse(text):
        from ..control import osc

        try:
            return getattr(osc, parse_name)(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def _port(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0..65535 (0 picks a free one), got {text!r}")
    return value


def _detail_amount(text):
    """The compositor's detail amount: a number in 0..2 (compose.py)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"expected a number in 0..2 (0 no detail, 1 the originals' own), "
                                         f"got {text!r}")
    return value


def _size(text):
    """WIDTHxHEIGHT -> (width, height), positive whole numbers (a window's size need not be even;
    render checks evenness for H.264)."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(match[1]), int(match[2])


def _gen_size(text):
    """'auto' or an even WIDTHxHEIGHT (the flow's squeeze halves each side)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        width, height = _size(text)
    except argparse.ArgumentTypeError:
        width = height = 1
    if width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"expected auto or an even WIDTHxHEIGHT such as 128x72 or "
                                         f"256x144 (the flow halves each side), got {text!r}")
    return width, height


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line naming it and what was expected, exit 2 (argparse's own error
    prints the whole usage first, which buries the one line that matters)."""

    def error(self, message):
        where = self.prog.removeprefix("flowvj").strip()
        self.exit(2, f"flowvj: error: {where + ': ' if where else ''}{message} (see {self.prog} --help)\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless it names its own, or it is a plain
    switch); descriptions keep their line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
        if shown and (action.option_strings or action.nargs in ("?", "*")):
            text += " (default: %(default)s)"
        return text


MODE_HELP = ("how the music moves through the images: explore = morph toward a random other image, "
             "pushed by the hits; magellan = a tour round the images, its speed from the music; "
             "weighted = each image owns a slice of the spectrum and the loudest slices win")


def build_parser():
    from .. import __version__
    from ..flow import PRESETS
    from ..lab.vae import PRESETS as VAE_PRESETS

    parser = _Parser(prog="flowvj", description=DESCRIPTION, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"flowvj {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, helptext):
        return sub.add_parser(name, help=helptext, description=helptext, formatter_class=_Help)

    t = command("train", "train the flow (or its VAE baseline) on CIFAR-10 or any image folder "
                         "(torchrun for DDP)")
    t.add_argument("--model", choices=("flow", "vae"), default="flow",
                   help="flow, or vae: the convolutional VAE baseline flowvj compare measures against")
    t.add_argument("--data", required=True, help="image folder (with train/ and test/), cifar-10-python.tar.gz, "
                                                  "or 'cifar10' with --download")
    t.add_argument("--test-data", help="folder of test images (default: DATA/test when it exists)")
    t.add_argument("--out", required=True, help="run folder: checkpoint, logs, sample grids")
    t.add_argument("--preset", choices=sorted(set(PRESETS) | set(VAE_PRESETS)),
                   help="model size: flow full|lite|tiny (default lite), vae small|tiny (default small)")
    t.add_argument("--image-size", type=_positive(int), default=32, help="training image side in px")
    t.add_argument("--batch-size", type=_positive(int), default=64, help="images per step, per process")
    t.add_argument("--lr", type=_positive(float), default=1e-3, help="Adam learning rate")
    t.add_argument("--epochs", type=_positive(int), default=100, help="stop after this many epochs")
    t.add_argument("--max-minutes", type=_positive(float), help="stop cleanly (checkpoint) after this long")
    t.add_argument("--max-steps", type=_positive(int), help="stop cleanly after this many steps")
    t.add_argument("--checkpoint-minutes", type=_positive(float), default=10.0,
                   help="write a checkpoint at least this often")
    t.add_argument("--checkpoint-steps", type=_positive(int), help="also write one every N steps")
    t.add_argument("--test-limit", type=_positive(int), help="evaluate on the first N test images each epoch")
    t.add_argument("--resume", action="store_true", help="continue OUT/ckpt.pt exactly")
    t.add_argument("--seed", type=int, default=0, help="makes the run reproducible")
    t.add_argument("--threads", type=_positive(int), help="torch threads per process (default: torch's)")
    t.add_argument("--cache-dir", help="where decoded datasets are cached (default ~/.cache/flowvj)")
    t.add_argument("--download", action="store_true", help="download the official CIFAR-10 archive")
    t.set_defaults(run=commands.train)

    e = command("eval", "test bits/dim and invertibility of a checkpoint (a VAE's: negative ELBO)")
    e.add_argument("--model", help="flow or VAE checkpoint, or a bundled flow: lite or hires (default: lite)")
    e.add_argument("--data", required=True, help="image folder (its test/ split when it has one) or archive")
    e.add_argument("--limit", type=_positive(int), help="first N images only (default: all)")
    e.add_argument("--size", type=_size, metavar="WxH",
                   help="evaluate a flow at WIDTHxHEIGHT, the images aspect-filled to it (a tuned model at "
                        "the show's size, e.g. 192x108; default: the model's own square side)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--seed", type=int, default=0, help="seed of the dequantisation noise")
    e.add_argument("--threads", type=_positive(int), help="torch threads (default: torch's)")
    e.add_argument("--cache-dir", help="where decoded datasets are cached (default ~/.cache/flowvj)")
    e.add_argument("--download", action="store_true", help="download the official CIFAR-10 archive")
    e.set_defaults(run=commands.eval)

    u = command("tune", "fine-tune a bundled flow on your images, so the in-betweens look like your "
                        "collection (torchrun for DDP); prints bits/dim before and after")
    u.add_argument("--images", nargs="+", required=True, metavar="DIR_OR_FILE",
                   help="folders and/or image files: your collection (a few held out to check the tuning)")
    u.add_argument("--out", required=True, help="the tuned model (.pt; play/render/serve take it with "
                                                "--model); its checkpoints, logs and report go to OUT.tune/")
    u.add_argument("--model", help="flow to start from: hires, lite or a checkpoint (default: hires, "
                                   "the model a CPU show draws with; see flowvj.lab.tune)")
    u.add_argument("--minutes", type=_positive(float), default=4.0, help="stop cleanly after this long")
    u.add_argument("--max-steps", type=_positive(int), help="stop cleanly after this many steps")
    u.add_argument("--resume", action="store_true", help="continue OUT.tune/ckpt.pt exactly")
    u.add_argument("--size", type=_size, default="192x108", metavar="WxH",
                   help="the show's generation size: the scale of the crops learnt from and of the figures")
    u.add_argument("--holdout", type=int, metavar="K",
                   help="images held out to check the tuning (default: a quarter, 2 to 8; 0 tunes on all)")
    u.add_argument("--lr", type=_positive(float), default=1e-4, help="Adam learning rate")
    u.add_argument("--batch-size", type=_positive(int), default=16, help="crops per step, per process")
    u.add_argument("--cifar", metavar="PATH", help="CIFAR-10 folder or archive to measure forgetting on "
                                                   "(default: the downloaded archive in the cache, if any)")
    u.add_argument("--seed", type=int, default=0, help="the held-out draw, the crops and the noise")
    u.add_argument("--threads", type=_positive(int), help="torch threads per process (default: torch's)")
    u.set_defaults(run=commands.tune)

    c = command("compare", "the flow against its VAE baseline and a pixel cross-fade: "
                           "reconstruction error and judged interpolations, as an HTML report")
    c.add_argument("-o", "--output", required=True, help="report folder (index.html, summary.json, PNGs)")
    c.add_argument("--images", nargs="+", help="folders and/or image files (default: the bundled demo images)")
    c.add_argument("--data", help="CIFAR-10 folder (its test/ split) or archive, for the in-distribution "
                                  "figures (default: none, your images only)")
    c.add_argument("--flow", help="flow checkpoint, or a bundled model: lite or hires (default: lite)")
    c.add_argument("--vae", help="VAE checkpoint from flowvj train --model vae (default: the bundled VAE)")
    c.add_argument("--base", metavar="lite|hires|PATH",
                   help="the model a tuned --flow is set beside, in-betweens side by side (default: the one "
                        "flowvj tune recorded it started from, else hires; none for a bundled --flow)")
    c.add_argument("--limit", type=_positive(int), default=500, help="CIFAR-10 test images compared")
    c.add_argument("--pairs", type=_positive(int), default=4, help="interpolated pairs per image set")
    c.add_argument("--frames", type=_positive(int), default=9, help="frames per interpolation, endpoints included")
    c.add_argument("--sizes", default="32x32,128x72,256x144",
                   help="WIDTHxHEIGHT sizes (even sides), comma-separated, to compare your images at "
                        "(default 32x32,128x72,256x144; the VAE runs at 32x32 only)")
    c.add_argument("--flicker-steps", type=_positive(int), default=60,
                   help="steps of the slow path measured for flicker (default 60: 2 s at 30 fps)")
    c.add_argument("--flicker-pairs", type=_positive(int), default=2,
                   help="pairs per image set and size measured for flicker (default 2)")
    c.add_argument("--seed", type=int, default=0, help="makes the report reproducible")
    c.add_argument("--threads", type=_positive(int), help="torch threads (default: torch's)")
    c.set_defaults(run=commands.compare)

    d = command("devices", "list sound inputs and outputs (index, name, channels, rate, host API)")
    d.set_defaults(run=commands.devices)

    o = command("osc-addresses", "the OSC addresses play, live and serve take with --osc-port (type "
                                 "tag, range, what each does) and the telemetry --osc-send sends")
    o.add_argument("--json", action="store_true", help='print {"controls": [...], "telemetry": [...]}')
    o.set_defaults(run=commands.osc_addresses)

    a = command("analyze", "tempo, beats and onsets of a track, from the same causal analyzer as live")
    a.add_argument("track", help="audio file (wav, flac, ogg, opus, mp3, m4a, ...)")
    a.add_argument("--json", action="store_true",
                   help='print {"tempo_bpm", "beats", "onsets", "duration", "phase_confidence"} (times in seconds)')
    a.add_argument("--min-bpm", type=_positive(float), default=80.0, help="preferred tempo range, low end")
    a.add_argument("--max-bpm", type=_positive(float), default=180.0, help="preferred tempo range, high end")
    a.set_defaults(run=commands.analyze)

    s = command("sync", "how well a video moves with its music: onset/motion cross-correlation, "
                        "AV-Align, beat alignment, idle jitter")
    s.add_argument("video", help="rendered video (mp4 or anything FFmpeg reads)")
    s.add_argument("--audio", help="the track (default: the video's own audio stream)")
    s.add_argument("--json", action="store_true", help="print one JSON object (xcorr_peak, xcorr_lag_ms, "
                                                        "av_align, idle_jitter, ...)")
    s.set_defaults(run=commands.sync)

    r = command("render", "render a music video: the track muxed in, H.264 + AAC")
    r.add_argument("track", nargs="?", help="audio file (wav, flac, ogg, opus, mp3, m4a, ...; "
                                            "default: the synthesised demo track)")
    r.add_argument("-o", "--output", required=True, help="the .mp4 to write (atomically)")
    _show_options(r, "hires, where bundled; lite on a CUDA GPU")
    r.add_argument("--gen-size", type=_gen_size, default="auto",
                   help="WIDTHxHEIGHT the flow draws at before the upscale to --size (even; larger is "
                        "sharper and slower); auto = the largest whose decode costs <= 0.5 GFLOP a frame "
                        "(128x72 with hires, 32x18 with lite): about twice real time for 720p on 2 cores")
    r.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="decode precision: fp32 exact; int8 ~41 dB from it, faster only on CPUs with "
                        "VNNI/AMX (encode stays exact)")
    r.add_argument("--size", type=_size, default="1280x720", help="video WIDTHxHEIGHT, even numbers")
    r.add_argument("--fps", type=_positive(float), default=30.0, help="video frame rate")
    r.add_argument("--duration", type=_positive(float), help="seconds of the track to render (default: all)")
    r.add_argument("--start", type=float, default=0.0, help="where in the track to start, seconds")
    r.add_argument("--encoder-preset", choices=ENCODER_PRESETS, default="superfast", metavar="PRESET",
                   help=f"x264 speed/size trade-off: {', '.join(ENCODER_PRESETS)}")
    r.add_argument("--decode-workers", type=_positive(int), default=1,
                   help="processes decoding frames in batches (1: this process)")
    r.add_argument("--decode-engine", choices=("auto", "inline", "local", "ray"), default="auto",
                   help="where the decode runs: inline (this process), local (--decode-workers processes "
                        "here), ray (Ray actors: the cluster at RAY_ADDRESS, else a local one; pip install "
                        "'flowvj[ray]'); auto = inline for 1 worker, else local")
    r.set_defaults(run=commands.render)
    for name, helptext in (("play", "play a track and show the visuals in a window"),
                           ("live", "listen to an input device (line-in, mic, a monitor source) "
                                    "and show the visuals in a window"),
                           ("serve", "show the visuals in a browser page with the controls (a track, "
                                     "or an input device with --device)")):
        p = command(name, helptext)
        if name in ("play", "serve"):
            p.add_argument("track", nargs="?", help="audio file (default: the synthesised demo track)")
            p.add_argument("--silent", action="store_true", help="follow the track by the clock, play no sound")
            p.add_argument("--loop", action="store_true", help="with --silent, repeat the track until the show is "
                                                               "ended (an installation, a soak test)")
        p.add_argument("--device", help="sound device: index or part of its name, see flowvj devices "
                                        "(default: the system's default)")
        _show_options(p, "hires, where bundled; lite on a CUDA GPU")
        p.add_argument("--gen-size", type=_gen_size, default="auto",
                       help="WIDTHxHEIGHT the flow draws at (even; larger is sharper and slower); "
                            "auto = the largest this machine draws at --fps, measured at start, "
                            "stepping down if frames run late and back up when headroom returns")
        p.add_argument("--min-gen-size", type=_gen_size, default=(128, 72), metavar="WxH",
                       help="with --gen-size auto, never draw smaller than this (by area); when frames "
                            "run late there, lower the frame rate (down to 24 fps) instead")
        p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                       help="decode precision: fp32 exact; int8 ~41 dB from it, faster only on CPUs with "
                            "VNNI/AMX (encode stays exact)")
        p.add_argument("--fps", type=_positive(float), default=60.0, help="frame rate to aim for")
        p.add_argument("--latency-ms", type=float, default=0.0,
                       help="the delay from the show to the audience (display, projector, sound device not "
                            "counted by the player): beat-triggered changes fire this much before the "
                            "predicted beat so they land on it")
        p.add_argument("--duration", type=_positive(float), help="stop after this many seconds (default: "
                                                                 "until quit or the track ends)")
        p.add_argument("--stats", metavar="PATH", help="write the run's figures as one JSON object at the end "
                                                       "(frames, median_fps, p95_frame_ms, tempo_bpm, ...)")
        p.add_argument("--scenes", metavar="FILE", help="scenes kept in this TOML file (one [name] table each: "
                                                        "images, mode, speed, ...): keys 1-9 recall the first "
                                                        "nine, the page and OSC /flowvj/scene any; the page "
                                                        "saves new ones to it")
        p.add_argument("--record", metavar="FILE.mp4", help="record the set as the audience sees and hears "
                                                            "it (H.264 + AAC, playable even if the show is "
                                                            "killed); frames the machine has no time for are "
                                                            "dropped from the recording and counted")
        p.add_argument("--record-size", type=_size, default="1280x720", metavar="WxH",
                       help="the recording's WIDTHxHEIGHT, even numbers")
        p.add_argument("--osc-port", type=_osc_flag("parse_port"), metavar="PORT",
                       help="take the live controls as OSC on this UDP port (/flowvj/mode, /flowvj/speed, "
                            "...: see flowvj osc-addresses; 0 picks a free one)")
        p.add_argument("--osc-host", default="127.0.0.1", metavar="HOST",
                       help="address --osc-port listens on; beyond loopback (e.g. 0.0.0.0) anyone on "
                            "the network can steer the show")
        p.add_argument("--osc-send", type=_osc_flag("parse_target"), metavar="HOST:PORT",
                       help="send the show's telemetry as OSC to HOST:PORT: /flowvj/beat, /tempo, "
                            "/levels, /fps, /state (see flowvj osc-addresses)")
        p.add_argument("--midi-in", metavar="NAME",
                       help="take the live controls from a MIDI controller: part of its port name "
                            "(see flowvj devices); CCs and notes through --midi-map, program change N "
                            "recalls scene N")
        p.add_argument("--midi-map", metavar="FILE",
                       help="the MIDI mapping, TOML [[map]] entries (cc or note, channel, control, value); "
                            "MIDI learn writes it (default: ~/.config/flowvj/midi.toml)")
        p.add_argument("--midi-clock", metavar="NAME",
                       help="follow the DJ's MIDI clock (24 ppqn, start/stop/continue) on this port "
                            "instead of the tempo heard")
        p.add_argument("--link", action="store_true",
                       help="join an Ableton Link session: while it has peers, its tempo and beat lead")
        p.add_argument("--quantum", type=_positive(float), default=4.0, metavar="BEATS",
                       help="beats per bar: with --link or --midi-clock, changes of mode, image set and "
                            "scene wait for the next bar line; Link shares its phase at this quantum")
        p.add_argument("--ndi", metavar="NAME",
                       help="also send the show as an NDI source NAME (Resolume, OBS, TouchDesigner); "
                            "needs pip install 'flowvj[ndi]' (NDI's runtime is not free software)")
        p.add_argument("--ndi-size", type=_size, default="1280x720", metavar="WxH",
                       help="WIDTHxHEIGHT of the NDI frames; the show's --size sends the composed frames "
                            "unscaled (any other size is scaled in NDI's sender thread)")
        if name == "serve":
            p.add_argument("--host", default="127.0.0.1",
                           help="address to listen on; beyond loopback (e.g. 0.0.0.0) the page needs "
                                "the token printed at start")
            p.add_argument("--port", type=_port, default=8765, help="TCP port (0 picks a free one)")
            p.add_argument("--image-sets", nargs="+", metavar="DIR_OR_FILE",
                           help="more image sets the page offers to switch to (each folder or file one set)")
            p.add_argument("--audience", action="store_true",
                           help="a second page for phones (its URL printed, a QR code on the VJ page): the "
                                "audience votes for images and a mood, which lean the show; the VJ page "
                                "shows the tally and switches their influence off")
            p.add_argument("--size", type=_size, default="1280x720",
                           help="WIDTHxHEIGHT of the frames the page (and NDI, the recording) gets: the "
                                "compositor's output size")
            p.set_defaults(run=commands.serve)
        else:
            p.add_argument("--size", type=_size, default="1280x720",
                           help="window WIDTHxHEIGHT, and the frames' (the compositor's output size)")
            p.add_argument("--fullscreen", action="store_true", help="start full-screen (f toggles)")
            p.add_argument("--display", type=int, default=0, help="which display, for --fullscreen")
            p.add_argument("--meter", action="store_true", help="start with the meter shown (Tab toggles)")
            p.set_defaults(run=commands.play)

    b = command("bench", "decode speed per generation size, and the size auto picks at 30 and 60 fps")
    b.add_argument("--sizes", help="comma-separated WIDTHxHEIGHT, even numbers (default: the auto ladder "
                                   "64x36 ... 1280x720, stopping after the first size slower than 1 s)")
    b.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                   help="where decode runs (auto: cuda when torch sees a GPU)")
    b.add_argument("--threads", type=_positive(int),
                   help="ONNX Runtime threads (default: 1 below 128x72; from there the faster of 1 and 2, "
                        "measured)")
    b.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="decode precision (int8: CPU, ONNX Runtime only)")
    b.add_argument("--backend", choices=("onnx", "torch"), default="onnx",
                   help="onnx (ONNX Runtime, the show's) or torch (the folded model, eager)")
    b.add_argument("--model", help="flow checkpoint, or a bundled model: lite or hires (default: the "
                                   "live shows' own: hires on a CPU, lite on a CUDA GPU)")
    b.add_argument("--repeats", type=_positive(int), default=10, help="timed decodes per size (at most)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(run=commands.bench)
    return parser


def _show_options(p, model_default):
    """The options every show command takes (play, live, render, serve)."""
    from ..compose import DEFAULT_DETAIL, DETAIL_METHODS
    from ..control.catalog import MODES

    p.add_argument("--images", nargs="+", metavar="DIR_OR_FILE",
                   help="folders and/or image files (default: the bundled demo images)")
    p.add_argument("--mode", choices=sorted(MODES), default="explore", help=MODE_HELP)
    p.add_argument("--model", help="flow checkpoint, or a bundled model: lite (sharpest in-betweens a "
                                   "pixel) or hires (built for large frames, ~17x cheaper a pixel) "
                                   f"(default: {model_default})")
    p.add_argument("--seed", type=int, default=0, help="makes the run reproducible")
    p.add_argument("--compute", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the flow runs: auto = a CUDA GPU when torch sees one, else the CPU")
    p.add_argument("--detail", choices=DETAIL_METHODS, default=DEFAULT_DETAIL,
                   help="how the flow's small frame becomes the --size frame: transfer = the detail of "
                        "your images at full size, added where the frame shows them; sharpen = an "
                        "unsharp mask; off = a plain bilinear scale")
    p.add_argument("--detail-amount", type=_detail_amount, default=1.0, metavar="0..2",
                   help="how much detail (0 none, 1 the originals' own; live: the detail control, "
                        "keys [ and ])")
