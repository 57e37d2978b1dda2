"""The subcommands: each takes the parsed flags and calls the library (the live ones go to
show/live/session.py); nothing here computes.

Each command imports what it runs when it runs: `flowvj --help`, `osc-addresses` or a flag
refused at parse time load no torch, ONNX Runtime or FFmpeg (0.05 s against seconds)."""

import json
from pathlib import Path

from ..errors import UserError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aiff",
                  ".aif", ".wma", ".mp4", ".webm", ".mka"}


def train(args):
    from ..lab.train import TrainOptions, train

    options = TrainOptions(
        data=args.data, out=args.out, test_data=args.test_data, preset=args.preset, model=args.model,
        image_size=args.image_size, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
        max_minutes=args.max_minutes, max_steps=args.max_steps, checkpoint_minutes=args.checkpoint_minutes,
        checkpoint_steps=args.checkpoint_steps, test_limit=args.test_limit, resume=args.resume,
        seed=args.seed, threads=args.threads, cache_dir=args.cache_dir, download=args.download,
    )
    train(options)


def eval(args):
    import torch

    from ..data import load_dataset
    from ..lab.train import evaluate, load_checkpoint_model
    from ..lab.vae import evaluate_vae

    torch.set_num_threads(args.threads) if args.threads else None
    kind, model = load_checkpoint_model(args.model)
    if args.size:
        from ..lab.train import images_at_size

        images = images_at_size(args.data, args.size, model, args.cache_dir, args.download)[: args.limit]
    else:
        images = load_dataset(args.data, "test", model.config.image_size, args.cache_dir,
                              args.download).images[: args.limit]
    result = (evaluate_vae if kind == "vae" else evaluate)(model, images, seed=args.seed,
                                                          show_progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def tune(args):
    from ..lab.tune import TuneOptions, format_report, tune

    report = tune(TuneOptions(images=args.images, out=args.out, model=args.model, minutes=args.minutes,
                              max_steps=args.max_steps, resume=args.resume, size=args.size,
                              holdout=args.holdout, lr=args.lr, batch_size=args.batch_size,
                              cifar=args.cifar, seed=args.seed, threads=args.threads))
    if report is not None:  # rank 0 of a torchrun
        print(format_report(report))


def compare(args):
    import torch

    from ..lab.compare import run_compare

    torch.set_num_threads(args.threads) if args.threads else None
    summary = run_compare(args.output, images=args.images, data=args.data, flow_path=args.flow,
                          vae_path=args.vae, cifar_limit=args.limit, pairs=args.pairs, frames=args.frames,
                          seed=args.seed, sizes=args.sizes, flicker_steps=args.flicker_steps,
                          flicker_pairs=args.flicker_pairs, base=args.base)
    for name, s in summary["sets"].items():
        for size, e in s["sizes"].items():
            r, f = e["reconstruction"], e["flicker"]["summary"]
            vae = "" if r["vae_psnr_db"] is None else f", VAE {r['vae_psnr_db']:.2f} dB"
            print(f"{name} {size}: {r['images']} images, reconstruction PSNR flow {r['flow_psnr_db']:.1f} dB{vae}; "
                  f"flicker max/mean slerp {f['flow_slerp']['max_over_mean']:.2f}, "
                  f"cross-fade {f['crossfade']['max_over_mean']:.2f}")
    tuned = summary.get("bundled_vs_tuned")
    for size, e in (tuned or {}).get("sizes", {}).items():
        print(f"bundled {tuned['bundled']} vs tuned {tuned['tuned']} at {size}: "
              + ", ".join(f"{model} {row['bits_per_dim']:.3f} bits/dim" for model, row in e["models"].items()))
    print(f"wrote {args.output}/index.html and summary.json")


def devices(args):
    from ..audio.devices import devices_table
    from ..control.midi_ports import ports_table

    print(devices_table())
    print()
    print(ports_table())


def bench(args):
    from ..show.bench import bench_command, format_report

    report = bench_command(args.model, args.sizes, device=args.device, threads=args.threads,
                           precision=args.precision, backend=args.backend, repeats=args.repeats)
    print(json.dumps(report) if args.json else format_report(report))


def analyze(args):
    from ..audio.analyzer import analyze
    from ..audio.sources import FileSource

    if args.min_bpm >= args.max_bpm:
        raise UserError(f"--min-bpm {args.min_bpm:g} must be below --max-bpm {args.max_bpm:g}")
    source = FileSource(args.track)
    result = analyze(source.samples, source.rate, tempo_range=(args.min_bpm, args.max_bpm))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tempo: {result['tempo_bpm']:.2f} BPM, {len(result['beats'])} beats, "
              f"{len(result['onsets'])} onsets, {result['duration']:.1f} s")


def render(args):
    from ..audio.synth import demo_track
    from ..show.render import render

    track_from_images(args)
    gen_size = args.gen_size
    engine = args.decode_engine
    if engine == "auto":
        engine = "inline" if args.decode_workers == 1 else "local"
    frames = render(args.track or demo_track(), args.output, images=args.images, model_path=args.model, mode=args.mode,
                    size=args.size, fps=args.fps, duration_s=args.duration, start_s=args.start,
                    seed=args.seed, encoder_preset=args.encoder_preset, gen_size=gen_size,
                    workers=args.decode_workers, engine=engine, precision=args.precision,
                    device=args.compute, detail=args.detail, detail_amount=args.detail_amount)
    print(f"wrote {args.output} ({frames} frames)")


def sync(args):
    from ..lab.metrics import sync_report

    result = sync_report(args.video, args.audio)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def osc_addresses(args):
    from ..control.osc import addresses, addresses_table

    print(json.dumps(addresses()) if args.json else addresses_table())


def play(args):
    """play and live: the show in a window."""
    from ..show.live.session import run_live, window_outputs

    track_from_images(args)
    run_live(args, window_outputs)


def serve(args):
    """serve: the show in a browser page."""
    from ..show.live.session import run_live, web_outputs

    track_from_images(args)
    run_live(args, web_outputs)


def track_from_images(args):
    """`play --images DIR track.ogg`: --images takes several values, so a track given after it
    lands among them; an audio file there (and no track) is the track, as the user meant."""
    audio = [spec for spec in args.images or [] if Path(spec).suffix.lower() in AUDIO_SUFFIXES]
    if audio and hasattr(args, "track"):
        if args.track is not None or len(audio) > 1:
            raise UserError(f"--images {audio[0]} is an audio file; expected images (give the track "
                            "once, before --images)")
        args.track = audio[0]
        args.images = [spec for spec in args.images if spec != audio[0]] or None
