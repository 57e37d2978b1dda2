"""A live session set up and run: the source, the Show and the step ladder (open_live), then every
input and output the command line asked for (OSC, MIDI, Link or MIDI clock, NDI, the recorder, the
window or the page) opened in order, each bad option refused in one line before the model loads,
and all of them closed on every way out. The CLI parses; this wires and runs.

The imports inside functions are the optional hardware and protocols (a sound device, the window,
MIDI, Link, NDI, the web server, the recorder's encoder, OSC): a render or a show without them
never loads them, and a machine that lacks one only fails when it is asked for."""

import json
import logging
import sys
from pathlib import Path

from ...atomic import atomic_path
from ...audio.synth import demo_track
from ...control.scenes import DEMO, load_scenes
from ...errors import UserError
from ...flow import load_model
from ...flow.checkpoint import default_model
from ...compose import DEFAULT_DETAIL
from ...images import check_image_specs, load_originals
from ..generator import resolve_device
from ..pipeline import Show, make_compositor
from ..threads import blas_threads, one_thread_each
from ..sizes import (
    area,
    check_frame_size,
    check_gen_fits_model,
    check_gen_memory,
    scaled_ladder,
    size_text,
)
from .jobs import model_spec
from .loop import LiveLoop

log = logging.getLogger("flowvj.show.live")


def open_live(*, track=None, device=None, images=None, model_path=None, mode="explore", seed=0,
              silent=False, gen_size=None, fps=60.0, output_size=(1280, 720), precision="fp32",
              compute="cpu", latency_ms=0.0, min_gen_size=(128, 72), loop=False, detail=DEFAULT_DETAIL,
              detail_amount=1.0):
    """The source, the Show and the step-down ladder of a live session: a track played (or
    followed silently), or a device. gen_size: (W, H), "auto" (the largest size on the ladder
    this machine draws within the frame budget, measured now) or None (the model's own size).
    precision: "fp32" or "int8" (decode only; encode stays exact; ~41 dB from fp32). Returns
    (source, show, ladder, measured): the ladder of sizes the show may step between (from
    min_gen_size up), and what was measured at each size tried ({(W, H): the bench row, with
    its "decode_ms" and the ONNX Runtime "threads" measured faster there}). The Show composes
    each frame to `output_size` (compose.py: `detail` transfer, sharpen or off, `detail_amount`
    0..2): every output gets frames of that size.

    Everything the user can get wrong is checked before the model loads and before any output
    opens: the output device (so `serve` says so before it prints its URL), the images."""
    from ...audio.devices import find_device
    from ...audio.sources import DeviceSource, FileSource, Playback, SilentPlayback

    if loop and not (silent and track is not None):
        raise UserError("--loop repeats a track followed with --silent; add --silent")
    if not 0 <= latency_ms <= 2000:
        raise UserError(f"--latency-ms {latency_ms:g}: expected 0..2000 ms (the display's and the sound "
                        "device's delay)")
    compositor = make_compositor(output_size, detail, detail_amount)
    one_thread_each()       # the loop, decode and compose threads are the show's (threads.py)
    if track is not None:
        file_source = FileSource(track)
        if not silent:
            try:
                find_device(device, "output")
            except UserError as error:
                if "choose one of: none" in str(error):
                    raise UserError("no sound output device found to play the track on; add --silent "
                                    "to follow it without sound (or see flowvj devices)") from None
                raise UserError(f"{error}; or add --silent to follow the track without sound") from None
        source = SilentPlayback(file_source, loop=loop) if silent else Playback(file_source, device=device)
    else:
        find_device(device, "input")
        source = DeviceSource(device)
    if images:
        check_image_specs(images)

    compute = resolve_device(compute)
    model = load_model(model_path or default_model(compute))
    ladder, measured = (), {}
    if gen_size == "auto":
        from ..bench import pick_gen_size, runnable

        if min_gen_size == "auto":
            raise UserError("--min-gen-size auto: expected WIDTHxHEIGHT, e.g. 128x72")
        ladder = runnable(model, scaled_ladder(output_size))    # sizes this model's squeezes divide
        floored = [size for size in ladder if area(size) >= area(min_gen_size)]
        ladder = floored or ladder[-1:]                         # the floor, by area
        gen_size, rows = pick_gen_size(model, fps, ladder=ladder, precision=precision, device=compute)
        measured = {(row["width"], row["height"]): row for row in rows}
        log.info("generation size %s (auto: the largest this machine draws at %g fps; decode %s)",
                 size_text(gen_size), fps,
                 ", ".join(f"{row['size']} {row['decode_ms']:.0f} ms" for row in rows))
    elif gen_size is None:
        gen_size = (model.config.image_size,) * 2
    check_gen_fits_model(gen_size, model)
    check_gen_memory(gen_size, model)
    originals, images = load_originals(images, output_size, gen_size)
    # Built before the source starts: the model's export takes a few seconds a track must not lose.
    show = Show(model, images, mode=mode, seed=seed, sample_rate=source.rate, gen_size=gen_size,
                precision=precision, device=compute, latency_s=latency_ms / 1000.0,
                threads=measured.get(tuple(gen_size), {}).get("threads"), compositor=compositor,
                originals=originals)
    return source, show, ladder, measured


def run_live(args, outputs_for):
    """play / live / serve: one live loop; `outputs_for(args, image_sets, scenes)` opens the
    outputs (the image sets and scenes read once, here, before the model loads)."""
    image_sets = _image_sets(args)      # checked before the model loads
    scenes, record = _scenes(args), _record_path(args)      # --scenes and --record, before it too
    bus, osc_input, osc_outputs = _osc_io(args)     # a port in use or a bad --osc-send, before it too
    ndi_outputs = _ndi_outputs(args)                # --ndi without the NDI extra, before it too
    midi_outputs, clock = _dj_inputs(args, bus)     # an unknown MIDI port or a bad --midi-map too
    output_size = check_frame_size(args.size, even=False)      # the compositor's: every output's frames
    track = getattr(args, "track", None)
    if track is None and getattr(args, "device", None) is None and args.command in ("play", "serve"):
        track = demo_track()
    source, show, ladder, measured = open_live(track=track, device=getattr(args, "device", None), images=args.images,
                                     model_path=args.model, mode=args.mode, seed=args.seed,
                                     silent=getattr(args, "silent", False), gen_size=args.gen_size,
                                     fps=args.fps, output_size=output_size, precision=args.precision,
                                     compute=args.compute, latency_ms=args.latency_ms,
                                     min_gen_size=args.min_gen_size, loop=getattr(args, "loop", False),
                                     detail=args.detail, detail_amount=args.detail_amount)
    outputs, recorders = osc_outputs + ndi_outputs + midi_outputs, []
    try:        # every way out from here closes what was opened (threads, sockets, files)
        print(f"drawing at {size_text(show.gen_size)} ({show.precision} decode on {show.device}), "
              f"composed to {size_text(show.out_size)} (detail {args.detail}, amount {args.detail_amount:g})",
              flush=True)
        outputs = outputs_for(args, image_sets, scenes) + outputs
        recorders = _recorder(args, record, source)
        outputs += recorders
        with source:
            loop = LiveLoop(show, source, outputs, fps=args.fps, image_sets=image_sets,
                            ladder=ladder, bus=bus, scenes=scenes, clock=clock, quantum=args.quantum,
                            measured=measured)
            loop.scene_file = getattr(args, "scenes", None)    # where "save scene" writes
            # the model drawing, and the machine's default: a scene's model is loaded only when
            # it differs, and saved only when it is not the default (control/scenes.py)
            loop.model_name = model_spec(args.model or default_model(show.device))
            loop.default_model_name = default_model(show.device)
            stats = loop.run(args.duration)
    finally:
        if osc_input is not None:
            osc_input.close()
        if clock is not None:
            clock.close()
        for output in outputs:
            try:
                output.close()
            except Exception as error:  # noqa: BLE001 - the others still close, the stats are written
                print(f"flowvj: closing {type(output).__name__} failed: {error}", file=sys.stderr)
    for recorder in recorders:
        stats.update(recorder.stats())      # record_frames, record_dropped
    stats["blas_threads"] = blas_threads()
    if args.stats:
        with atomic_path(args.stats) as tmp:
            tmp.write_text(json.dumps(stats) + "\n")
    if stats["frames"] < 2:
        print(f"{stats['frames']} frame: too short a run to measure a frame rate")
    else:
        print(f"{stats['frames']} frames, median {stats['median_fps']:.1f} fps, p95 frame time "
              f"{stats['p95_frame_ms']:.1f} ms, median audio-to-frame {stats['median_latency_ms']:.1f} ms, "
              f"drawn at {stats['gen_size']}")
    return stats


def _scenes(args):
    """--scenes FILE: name -> Scene in file order ({} for a file not made yet: saving a scene
    from the page makes it), each scene's images and model file checked now."""
    if not getattr(args, "scenes", None):
        return {}

    if not Path(args.scenes).exists():      # said, in case it is a typo for a file that is there
        print(f"--scenes {args.scenes}: not found; will be created on save", flush=True)
        return {}
    scenes = load_scenes(args.scenes)
    for scene in scenes.values():
        if scene.images not in (None, DEMO):
            check_image_specs(scene.images, f"{args.scenes}: scene {scene.name!r}: images")
        if isinstance(scene.model, Path) and not scene.model.is_file():
            raise UserError(f"{args.scenes}: scene {scene.name!r}: model {scene.model} does not exist "
                            "(expected a checkpoint file, or lite or hires)")
    print(f"scenes: {', '.join(scenes) or 'none yet'} ({args.scenes})", flush=True)
    return scenes


def _record_path(args):
    """--record FILE.mp4 and --record-size, checked before the show starts (None: no --record)."""
    if not getattr(args, "record", None):
        return None
    from ...outputs.recorder import check_record_path

    check_frame_size(args.record_size, flag="--record-size", even=True)
    return check_record_path(args.record)


def _recorder(args, path, source):
    """The set recorder as a live output ([] without --record); the audio rate is the source's
    once it runs."""
    if path is None:
        return []
    from ...outputs.recorder import Recorder

    recorder = Recorder(path, rate=lambda: source.rate, size=args.record_size, fps=args.fps)
    print(f"recording to {path} at {args.record_size[0]}x{args.record_size[1]}", flush=True)
    return [recorder]


def _osc_io(args):
    """The live loop's control bus, the OSC input posting to it (--osc-port; None without) and
    the telemetry output (--osc-send; [] without). Both bind or resolve now, before the model
    loads, so a wrong flag is said first; controls sent meanwhile wait on the bus."""
    from ...control import ControlBus

    bus, osc_input, outputs = ControlBus(), None, []
    if getattr(args, "osc_port", None) is None and getattr(args, "osc_send", None) is None:
        return bus, osc_input, outputs
    from ...control.osc import OscInput, OscTelemetry

    if args.osc_send is not None:
        outputs.append(OscTelemetry(*args.osc_send))
        print(f"OSC: sending telemetry to {args.osc_send[0]}:{args.osc_send[1]}", flush=True)
    if args.osc_port is not None:
        osc_input = OscInput(bus, host=args.osc_host, port=args.osc_port)
        print(f"OSC: listening on {osc_input.listening_on}", flush=True)
    return bus, osc_input, outputs


def _ndi_outputs(args):
    """[NdiOutput] for --ndi NAME (sending at --ndi-size, the show's --fps), else []."""
    if getattr(args, "ndi", None) is None:
        return []
    from ...outputs.ndi import NdiOutput

    ndi = NdiOutput(args.ndi, size=args.ndi_size, fps=args.fps)
    print(f"NDI: sending {ndi.size[0]}x{ndi.size[1]} as {ndi.source_name!r}", flush=True)
    return [ndi]


def _dj_inputs(args, bus):
    """The MIDI controller (--midi-in: posts to `bus`; an output, so the loop hands it MIDI
    learn) and the DJ's clock (--link, --midi-clock, Link first when both; None without). The
    mapping is read and the ports opened now, so a wrong name is said before the model loads."""
    from ...control import clock as clocks

    outputs, found, latency_s = [], [], args.latency_ms / 1000.0
    if args.midi_in is not None:
        from ...control.midi import MidiInput

        midi = MidiInput(bus, args.midi_in, args.midi_map)
        outputs.append(midi)
        print(f"MIDI: controls from {midi.name} ({len(midi.mapping.bindings)} bindings in {midi.map_path})",
              flush=True)
    if args.link:
        found.append(clocks.LinkClock(quantum=args.quantum, latency_s=latency_s))
        print(f"Link: on (quantum {args.quantum:g}); a session with peers leads the tempo", flush=True)
    if args.midi_clock is not None:
        found.append(clocks.MidiClock.open(args.midi_clock, latency_s=latency_s))
        print(f"MIDI clock: from {found[-1].name}", flush=True)
    return outputs, (clocks.FirstClock(found) if len(found) > 1 else found[0] if found else None)


def window_outputs(args, image_sets=None, scenes=None):
    """The window (play, live); it offers no image sets or scenes of its own (keys 1-9 recall)."""
    from ...outputs.window import Window

    return [Window(size=args.size, fullscreen=args.fullscreen, display=args.display,
                   show_meter=args.meter)]


def _image_sets(args):
    """Name -> image paths of the sets the browser offers: the show's own (--images, or the
    bundled demo images as 'demo'), then each --image-sets folder or file by its name."""
    first = Path(args.images[0]).stem if args.images else "demo"
    sets = {first: args.images}

    check_image_specs(args.images or [], "--images")
    for spec in check_image_specs(getattr(args, "image_sets", None) or [], "--image-sets"):
        name = Path(spec).stem
        while name in sets:
            name += "'"
        sets[name] = [spec]
    return sets


def web_outputs(args, image_sets, scenes):
    """The page (serve), offering the image sets and the scenes run_live read."""
    from ...outputs.web import WebOutput

    controls = {"mode": args.mode, "detail": args.detail_amount}
    audience = None
    if getattr(args, "audience", False):
        audience = {name: _image_names(specs) for name, specs in image_sets.items()}
    allowed = [name for name, scene in scenes.items() if scene.audience]   # `audience = true`
    web = WebOutput(host=args.host, port=args.port, controls=controls, image_sets=list(image_sets),
                    scenes=list(scenes) if args.scenes else None, audience=audience,
                    audience_scenes=allowed).start()
    for url in web.urls:  # beyond loopback: the LAN address(es), with the token the server asks for
        print(f"open {url} in a browser", flush=True)
    for url in web.audience_urls:   # the VJ page shows it as a QR code
        print(f"audience: phones open {url}", flush=True)
    if audience is not None and web.token is None:
        print(f"audience: --host {args.host} is this machine alone; for phones on the network, add "
              "--host 0.0.0.0", flush=True)
    return [web]


def _image_names(specs):
    """The names (file stems) of a set's images in the order the show loads them
    (images.load_show_images: each spec in turn, a folder's files sorted by path), for the
    audience's ballots."""
    from ...data import list_image_files
    from ...images import DEFAULT_IMAGES

    names = []
    for spec in map(Path, specs or [DEFAULT_IMAGES]):
        files = [Path(row[0]) for row in list_image_files(spec.resolve())] if spec.is_dir() else [spec]
        names += [file.stem for file in files]
    return names
