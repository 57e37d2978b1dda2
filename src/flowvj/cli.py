"""The one command, `flowvj`. Subcommands only parse their flags and call the library."""

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import UserError


def _train(args):
    from .train import TrainOptions, train

    options = TrainOptions(
        data=args.data, out=args.out, test_data=args.test_data, preset=args.preset, model=args.model,
        image_size=args.image_size, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
        max_minutes=args.max_minutes, max_steps=args.max_steps, checkpoint_minutes=args.checkpoint_minutes,
        checkpoint_steps=args.checkpoint_steps, test_limit=args.test_limit, resume=args.resume,
        seed=args.seed, threads=args.threads, cache_dir=args.cache_dir, download=args.download,
    )
    train(options)


def _eval(args):
    import torch

    from .data import load_dataset
    from .train import evaluate, load_checkpoint_model
    from .vae import evaluate_vae

    torch.set_num_threads(args.threads) if args.threads else None
    kind, model = load_checkpoint_model(args.model)
    images = load_dataset(args.data, "test", model.config.image_size, args.cache_dir,
                          args.download).images[: args.limit]
    result = (evaluate_vae if kind == "vae" else evaluate)(model, images, seed=args.seed,
                                                          show_progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def _compare(args):
    import torch

    from .compare import run_compare

    torch.set_num_threads(args.threads) if args.threads else None
    summary = run_compare(args.output, images=args.images, data=args.data, flow_path=args.flow,
                          vae_path=args.vae, cifar_limit=args.limit, pairs=args.pairs, frames=args.frames,
                          seed=args.seed)
    for name, s in summary["sets"].items():
        r = s["reconstruction"]
        print(f"{name}: {r['images']} images, reconstruction PSNR flow {r['flow_psnr_db']:.1f} dB, "
              f"VAE {r['vae_psnr_db']:.2f} dB")
    print(f"wrote {args.output}/index.html and summary.json")


def _devices(args):
    from .audio.devices import devices_table

    print(devices_table())


def _analyze(args):
    from .audio.analyzer import analyze
    from .audio.sources import FileSource

    if args.min_bpm >= args.max_bpm:
        raise UserError(f"--min-bpm {args.min_bpm:g} must be below --max-bpm {args.max_bpm:g}")
    source = FileSource(args.track)
    result = analyze(source.samples, source.rate, tempo_range=(args.min_bpm, args.max_bpm))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tempo: {result['tempo_bpm']:.2f} BPM, {len(result['beats'])} beats, "
              f"{len(result['onsets'])} onsets, {result['duration']:.1f} s")


def _render(args):
    from .engine import demo_track, render
    from .outputs.video import parse_size

    frames = render(args.track or demo_track(), args.output, images=args.images, model_path=args.model, mode=args.mode,
                    size=parse_size(args.size), fps=args.fps, duration_s=args.duration, start_s=args.start,
                    seed=args.seed, encoder_preset=args.encoder_preset)
    print(f"wrote {args.output} ({frames} frames)")


def _sync(args):
    from .metrics import sync_report

    result = sync_report(args.video, args.audio)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def _live(args, outputs_for):
    """play / live / serve: one live loop; `outputs_for(args)` opens the outputs."""
    from .engine import LiveLoop, demo_track, open_live

    image_sets = _image_sets(args)      # checked before the model loads
    track = getattr(args, "track", None)
    if track is None and getattr(args, "device", None) is None and args.command in ("play", "serve"):
        track = demo_track()
    source, show = open_live(track=track, device=getattr(args, "device", None), images=args.images,
                                  model_path=args.model, mode=args.mode, seed=args.seed,
                                  silent=getattr(args, "silent", False))
    outputs = outputs_for(args)
    try:
        with source:
            stats = LiveLoop(show, source, outputs, fps=args.fps,
                             image_sets=image_sets).run(args.duration)
    finally:
        for output in outputs:
            output.close()
    print(f"{stats['frames']} frames, median {stats['median_fps']:.1f} fps, p95 frame time "
          f"{stats['p95_frame_ms']:.1f} ms, median audio-to-frame {stats['median_latency_ms']:.1f} ms")


def _window_outputs(args):
    from .outputs.video import parse_size
    from .outputs.window import Window

    return [Window(size=parse_size(args.size), fullscreen=args.fullscreen, display=args.display,
                   show_meter=args.meter)]


def _image_sets(args):
    """Name -> image paths of the sets the browser offers: the show's own (--images, or the
    bundled demo images as 'demo'), then each --image-sets folder or file by its name."""
    first = Path(args.images[0]).stem if args.images else "demo"
    sets = {first: args.images}
    for spec in getattr(args, "image_sets", None) or []:
        if not Path(spec).exists():
            raise UserError(f"--image-sets {spec} does not exist; expected a folder of images or an image file")
        name = Path(spec).stem
        while name in sets:
            name += "'"
        sets[name] = [spec]
    return sets


def _web_outputs(args):
    from .outputs.web import WebOutput

    web = WebOutput(host=args.host, port=args.port, controls={"mode": args.mode},
                    image_sets=list(_image_sets(args))).start()
    print(f"open {web.url} in a browser", flush=True)
    return [web]


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


def build_parser():
    from .flow import PRESETS
    from .vae import PRESETS as VAE_PRESETS

    parser = argparse.ArgumentParser(prog="flowvj", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the flow (or its VAE baseline) on CIFAR-10 or any image folder "
                                     "(torchrun for DDP)")
    t.add_argument("--model", choices=("flow", "vae"), default="flow",
                   help="flow, or vae: the convolutional VAE baseline flowvj compare measures against")
    t.add_argument("--data", required=True, help="image folder (with train/ and test/), cifar-10-python.tar.gz, "
                                                  "or 'cifar10' with --download")
    t.add_argument("--test-data", help="folder of test images (default: DATA/test when it exists)")
    t.add_argument("--out", required=True, help="run folder: checkpoint, logs, sample grids")
    t.add_argument("--preset", choices=sorted(set(PRESETS) | set(VAE_PRESETS)),
                   help="model size: flow full|lite|tiny (default lite), vae small|tiny (default small)")
    t.add_argument("--image-size", type=_positive(int), default=32)
    t.add_argument("--batch-size", type=_positive(int), default=64, help="per process")
    t.add_argument("--lr", type=_positive(float), default=1e-3)
    t.add_argument("--epochs", type=_positive(int), default=100)
    t.add_argument("--max-minutes", type=_positive(float), help="stop cleanly (checkpoint) after this long")
    t.add_argument("--max-steps", type=_positive(int))
    t.add_argument("--checkpoint-minutes", type=_positive(float), default=10.0)
    t.add_argument("--checkpoint-steps", type=_positive(int))
    t.add_argument("--test-limit", type=_positive(int), help="evaluate on the first N test images each epoch")
    t.add_argument("--resume", action="store_true", help="continue OUT/ckpt.pt exactly")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_positive(int), help="torch threads per process")
    t.add_argument("--cache-dir", help="where decoded datasets are cached (default ~/.cache/flowvj)")
    t.add_argument("--download", action="store_true", help="download the official CIFAR-10 archive")
    t.set_defaults(run=_train)

    e = sub.add_parser("eval", help="test bits/dim and invertibility of a checkpoint (a VAE's: negative ELBO)")
    e.add_argument("--model", help="flow or VAE checkpoint (default: the bundled flow)")
    e.add_argument("--data", required=True, help="image folder (its test/ split when it has one) or archive")
    e.add_argument("--limit", type=_positive(int), help="first N images only")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--seed", type=int, default=0, help="seed of the dequantisation noise")
    e.add_argument("--threads", type=_positive(int))
    e.add_argument("--cache-dir")
    e.add_argument("--download", action="store_true", help="download the official CIFAR-10 archive")
    e.set_defaults(run=_eval)

    c = sub.add_parser("compare", help="the flow against its VAE baseline and a pixel cross-fade: "
                                       "reconstruction error and judged interpolations, as an HTML report")
    c.add_argument("-o", "--output", required=True, help="report folder (index.html, summary.json, PNGs)")
    c.add_argument("--images", nargs="+", help="folders and/or image files (default: the bundled demo images)")
    c.add_argument("--data", help="CIFAR-10 folder (its test/ split) or archive, for the in-distribution "
                                  "figures (default: none, your images only)")
    c.add_argument("--flow", help="flow checkpoint (default: the bundled model)")
    c.add_argument("--vae", help="VAE checkpoint from flowvj train --model vae (default: the bundled VAE)")
    c.add_argument("--limit", type=_positive(int), default=500, help="CIFAR-10 test images compared")
    c.add_argument("--pairs", type=_positive(int), default=4, help="interpolated pairs per image set")
    c.add_argument("--frames", type=_positive(int), default=9, help="frames per interpolation, endpoints included")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=_positive(int))
    c.set_defaults(run=_compare)

    d = sub.add_parser("devices", help="list sound inputs and outputs (index, name, channels, rate, host API)")
    d.set_defaults(run=_devices)

    a = sub.add_parser("analyze", help="tempo, beats and onsets of a track, from the same causal analyzer as live")
    a.add_argument("track", help="audio file (wav, flac, ogg, opus, mp3, m4a, ...)")
    a.add_argument("--json", action="store_true",
                   help='print {"tempo_bpm", "beats", "onsets", "duration"} (times in seconds)')
    a.add_argument("--min-bpm", type=_positive(float), default=80.0, help="preferred tempo range, low end")
    a.add_argument("--max-bpm", type=_positive(float), default=180.0, help="preferred tempo range, high end")
    a.set_defaults(run=_analyze)

    s = sub.add_parser("sync", help="how well a video moves with its music: onset/motion cross-correlation, "
                                    "AV-Align, beat alignment, idle jitter")
    s.add_argument("video", help="rendered video (mp4 or anything FFmpeg reads)")
    s.add_argument("--audio", help="the track (default: the video's own audio stream)")
    s.add_argument("--json", action="store_true", help="print one JSON object (xcorr_peak, xcorr_lag_ms, "
                                                        "av_align, idle_jitter, ...)")
    s.set_defaults(run=_sync)
    r = sub.add_parser("render", help="render a music video: the track muxed in, H.264 + AAC")
    r.add_argument("track", nargs="?", help="audio file (wav, flac, ogg, opus, mp3, m4a, ...; "
                                            "default: the synthesised demo track)")
    r.add_argument("-o", "--output", required=True, help="the .mp4 to write (atomically)")
    _show_options(r)
    r.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT, even numbers (default 1280x720)")
    r.add_argument("--fps", type=_positive(float), default=30.0)
    r.add_argument("--duration", type=_positive(float), help="seconds of the track to render (default: all)")
    r.add_argument("--start", type=float, default=0.0, help="where in the track to start, seconds")
    r.add_argument("--encoder-preset", default="superfast", help="x264 preset (ultrafast ... veryslow)")
    r.set_defaults(run=_render)
    for name, helptext in (("play", "play a track and show the visuals in a window"),
                           ("live", "listen to an input device and show the visuals in a window"),
                           ("serve", "show the visuals in a browser (a track, or an input device)")):
        p = sub.add_parser(name, help=helptext)
        if name in ("play", "serve"):
            p.add_argument("track", nargs="?", help="audio file (default: the synthesised demo track)")
            p.add_argument("--silent", action="store_true", help="follow the track by the clock, play no sound")
        p.add_argument("--device", help="sound device: index or part of its name (see flowvj devices)")
        _show_options(p)
        p.add_argument("--fps", type=_positive(float), default=60.0, help="frame rate to aim for")
        p.add_argument("--duration", type=_positive(float), help="stop after this many seconds")
        if name == "serve":
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=8765)
            p.add_argument("--image-sets", nargs="+", metavar="DIR_OR_FILE",
                           help="more image sets the page offers to switch to (each folder or file one set)")
            p.set_defaults(run=lambda a: _live(a, _web_outputs))
        else:
            p.add_argument("--size", default="1280x720", help="window size WIDTHxHEIGHT")
            p.add_argument("--fullscreen", action="store_true")
            p.add_argument("--display", type=int, default=0, help="which display, for --fullscreen")
            p.add_argument("--meter", action="store_true", help="start with the meter shown (Tab toggles)")
            p.set_defaults(run=lambda a: _live(a, _window_outputs))
    return parser


def _show_options(p):
    """The options every show command takes (play, live, render, serve)."""
    from .navigate import MODES

    p.add_argument("--images", nargs="+", help="folders and/or image files (default: the bundled demo images)")
    p.add_argument("--mode", choices=sorted(MODES), default="explore", help="how the music moves through the images")
    p.add_argument("--model", help="flow checkpoint (default: the bundled model)")
    p.add_argument("--seed", type=int, default=0, help="makes the run reproducible")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"flowvj: warning: {message}", file=file or sys.stderr)


def main(argv=None):
    # OpenMP threads that spin while waiting made training ~10x slower whenever another process
    # shared the cores; passive waiting costs little when the machine is idle. Must precede torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    warnings.showwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as e:
        print(f"flowvj: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowvj: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
