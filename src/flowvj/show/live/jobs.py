"""Work off the frame loop, and the size policy applied: image-set loads, generation-size builds,
model loads (a scene's model) and scene-file writes run in background threads (background.py),
each keyed by the state it was made for, one of a kind at a time; the loop takes what finished
once a frame and applies it only while it still fits the show. A part of LiveLoop (loop.py)."""

import logging
import time
from pathlib import Path

from ...control.scenes import save_scenes
from ...errors import UserError
from ...flow import load_model
from ...flow.checkpoint import BUNDLED_MODELS, resolve_checkpoint
from ...images import images_at, load_originals, load_show_images, resize_images
from ..generator import Generator
from ..sizes import (
    area,
    check_frame_size,
    check_gen_fits_model,
    check_gen_memory,
    parse_size,
    size_text,
)

log = logging.getLogger("flowvj.show.live")


class OffLoopWork:
    """LiveLoop's background work and size changes; mixed into LiveLoop."""



    def _ask_image_set(self, name):
        """Ask for image set `name` unless it is what the show will show anyway: the set on
        screen cancels a load under way (its result is dropped on arrival), the set loading
        already is not asked for twice. Whether a load was started."""
        target = self._wanted_set[1] if self._wanted_set else self.image_set
        if name == target:
            return False
        if name == self.image_set:
            self._wanted_set = None
            return False
        self._want_image_set(name)
        return True

    def _want_image_set(self, name):
        """Load and encode an image set in the background; only the newest request is ever used."""
        self._requests += 1
        self._wanted_set = (self._requests, name)
        self._start_image_set()

    def _start_image_set(self):
        if self._background.busy("images"):     # one load at a time; the newest starts after it
            self._queued.add("images")
            return
        number, name = self._wanted_set
        show = self.show
        self._background.start("images", (number, self._state), self._load_image_set,
                               list(self.image_sets[name] or []) or None, show.generator, show.gen_size,
                               show)

    @staticmethod
    def _load_image_set(specs, generator, size, show):
        """(latents, the images at the gen size, the originals at the output size, the
        compositor's layers): all made here, in the background."""
        if show.compositor is None:
            images = load_show_images(specs, size)
            return generator.encode(images), images, None, None
        originals, images = load_originals(specs, show.out_size, size)
        return generator.encode(images), images, originals, show.prepare_layers(originals, images)

    def _want_size(self, value):
        """The `gen_size` control ("WxH"): build that generation size in the background and swap
        it in (a performer's choice, or the size policy's); the caption, or None."""
        size = check_frame_size(parse_size(value, "gen_size"), flag="gen_size")
        if self.policy is not None and size not in self.policy.ladder:
            raise UserError(f"gen_size {size_text(size)}: expected one of "
                            f"{', '.join(map(size_text, self.policy.ladder))} (the sizes this show "
                            "steps between, from --min-gen-size up)")
        check_gen_fits_model(size, self.show.model, flag="gen_size")
        check_gen_memory(size, self.show.model, flag="gen_size")
        if size == tuple(self.show.gen_size):
            if self._wanted_size is None:
                return None
            self._wanted_size = None        # a build under way is dropped when it arrives
            if self.policy is not None:
                self.policy.moved(time.perf_counter() - self._started, "size", size)
            return f"generation size stays {size_text(size)}"
        self._wanted_size = size
        self._start_size()
        return f"generation size {size_text(self.show.gen_size)} -> {size_text(size)} (building)"

    def _start_size(self):
        if self._background.busy("size"):       # one build at a time; the newest starts after it
            self._queued.add("size")
            return
        show = self.show
        # the files of the set on screen (None: the bundled demo images; False: not known here)
        specs = (list(self.image_sets.get(self.image_set) or []) or None) if self.image_sets else False
        started = self._background.start("size", (self._wanted_size, self._state), self._build_size, show.model,
                                         self._wanted_size, show.precision, show.device,
                                         self._threads.get(self._wanted_size), show.images,
                                         self._generators.pop(self._wanted_size, None), show.originals,
                                         specs, show.prepare_layers)
        if not started:
            self._give_up_size()

    def _give_up_size(self):
        """No size is being built any more (it failed, or could not start): the policy may decide
        again from the size the show has."""
        self._wanted_size = None
        if self.policy is not None and self.policy.pending:
            self.policy.moved(time.perf_counter() - self._started, "size", tuple(self.show.gen_size))

    @staticmethod
    def _build_size(model, size, precision, device, threads, images, generator=None, originals=None,
                    specs=False, prepare=None):
        """The images encoded at `size`, with the Generator kept from an earlier visit to that
        size where there is one: a step back up reuses its ONNX session (no export, no new
        session: the show's memory stays flat as the size goes up and down). The images come
        from the kept originals (images.images_at: scaled down, or read again from `specs` where
        the aspect differs; False: the set's files are not known, the images on screen are
        scaled), and the compositor's layers are made for them (`prepare`, the Show's). Returns
        (generator, latents, images, layers)."""
        if generator is None:
            generator = Generator(model, size=size, precision=precision, device=device, threads=threads)
        else:       # a picture from the last visit must not come back on a bad frame
            generator.reset_last_frame()
        if originals is not None and specs is not False:
            images = images_at(size, originals, specs)
        else:
            images = resize_images(originals if originals is not None else images, size)
        layers = None if prepare is None else prepare(originals, images)
        return generator, generator.encode(images), images, layers

    def _save_scenes(self):
        """Write the scenes saved live to the --scenes file, one writer at a time: saves that
        arrive while it writes are coalesced into its next write, so the file work never runs
        in the frame loop and never queues up, whatever the rate (issue 25: 20 saves a second
        took the page from 30 to 0.5 fps when each one rewrote the file in the loop)."""
        if not self._unsaved or self._background.busy("save"):
            return

        unsaved, self._unsaved = list(self._unsaved.values()), {}
        self._background.start("save", tuple(unsaved), save_scenes, self.scene_file, unsaved)

    def _take_finished(self):
        """Apply the background jobs that finished, where they still fit the show; restart the
        ones whose state moved on while they ran, if they are still wanted."""
        for done in self._background.take():
            try:
                if done.error is not None:
                    self._job_failed(done)
                elif done.kind == "images":
                    self._arrived_images(done)
                elif done.kind == "size":
                    self._arrived_size(done)
                elif done.kind == "model":
                    self._arrived_model(done)
            except Exception as error:  # noqa: BLE001 - one job's failure must not end the show
                self._fault(f"background {done.kind}", error)
                if done.kind == "size":
                    self._give_up_size()
                elif done.kind == "images":
                    self._wanted_set = None
                elif done.kind == "model":
                    self._wanted_model = None
        for kind in ("images", "size"):
            if kind in self._queued and not self._background.busy(kind):
                self._queued.discard(kind)      # start() queues it again if it cannot run yet
                try:
                    if kind == "images" and self._wanted_set is not None:   # for the state as it is now
                        self._start_image_set()
                    elif kind == "size" and self._wanted_size is not None:
                        self._start_size()
                except Exception as error:  # noqa: BLE001 - as above
                    self._fault(f"background {kind}", error)
                    self._give_up_size() if kind == "size" else setattr(self, "_wanted_set", None)
        self._save_scenes()

    def _job_failed(self, done):
        if done.kind == "model":
            self._model_failed(done)
            return
        if done.kind == "images" and self._wanted_set and done.key[0] == self._wanted_set[0]:
            name, self._wanted_set = self._wanted_set[1], None
            if isinstance(done.error, UserError):
                self.errors += 1
                log.error("live: image set %r not loaded: %s", name, done.error)
                self.announce(f"image set {name}: not loaded (see the terminal)")
                return
        elif done.kind == "size" and done.key[0] == self._wanted_size:
            self._give_up_size()
        elif done.kind == "save":       # kept for the next write (a full disk may clear)
            for scene in done.key:
                self._unsaved.setdefault(scene.name, scene)
            self.announce("scenes not saved (see the terminal)")
        self._fault(f"background {done.kind}", done.error)

    def _arrived_images(self, done):
        number, state = done.key
        if self._wanted_set is None or number != self._wanted_set[0]:
            return                          # a newer request came after it: dropped
        if state != self._state:            # the size changed while it loaded: load again
            self._start_image_set()
            return
        name, self._wanted_set = self._wanted_set[1], None
        latents, images, originals, layers = done.result
        self.show.navigator.set_images(latents)
        self._swap(latents=latents, images=images, originals=originals, layers=layers)
        self.image_set = name
        if self.temperature:
            self.show.navigator.set_temperature(self.temperature)
        self.announce(f"image set: {name} ({len(latents)} images)")

    def _arrived_size(self, done):
        size, state = done.key
        generator, latents, images, layers = done.result
        if size != self._wanted_size:       # another size was asked for since: dropped
            self._keep_generator(size, generator)
            return
        if state != self._state:            # the images changed while it built: build again
            self._keep_generator(size, generator)
            self._start_size()
            return
        self._wanted_size = None
        old, old_size = self.show.generator, tuple(self.show.gen_size)
        before = size_text(old_size)
        self.show.navigator.resize_images(latents)
        generator.bad_frames, old.bad_frames = generator.bad_frames + old.bad_frames, 0
        self.show.generator = generator
        self._keep_generator(old_size, old)     # for a step back
        self._swap(latents=latents, images=images, originals=self.show.originals, layers=layers)
        self.work_ms.clear()
        now_s = round(time.perf_counter() - self._started, 2)
        after = size_text(size)
        self.size_changes.append([now_s, before, after])
        if size[0] * size[1] < area(before):
            self.step_downs.append((now_s, before, after))
        if self.policy is not None:
            self.policy.moved(now_s, "size", size)
        self.announce(f"generation size {before} -> {after}")

    def _keep_generator(self, size, generator):
        """Keep a Generator for a later visit to its size: only sizes on the ladder (a handful),
        so a script stepping through any sizes cannot grow the show's memory."""
        if size in self.ladder and generator.model is self.show.model:    # not one of a model swapped out
            self._generators[size] = generator

    def _swap(self, latents, images, originals=None, layers=None):
        """New latents and images in the Show, with their originals and the compositor's layers
        (the next latent's decode composes with them): every job made for the old ones is now
        stale."""
        self.show.image_latents, self.show.images = latents, images
        self.show.originals, self.show.layers = originals, layers
        self._state += 1

    def _adapt(self, now):
        """Feed the size policy this frame's timing and apply what it decides: a generation size
        (built in the background, swapped in when ready) or a frame rate (at once)."""
        if self.policy is None or self._wanted_size is not None:
            return
        now_s = now - self._started
        decision = self.policy.decide(now_s)
        if decision is None:
            return
        kind, value = decision
        if kind == "fps":
            before, self.fps = self.fps, float(value)
            self.fps_changes.append([round(now_s, 2), before, self.fps])
            self.policy.moved(now_s, "fps", self.fps)
            self.announce(f"frame rate {before:g} -> {self.fps:g} fps "
                          f"({'frames ran late' if self.fps < before else 'headroom returned'})")
        elif kind == "size" and tuple(value) != tuple(self.show.gen_size):
            try:
                check_gen_memory(tuple(value), self.show.model, flag="gen_size")
            except UserError as error:
                log.info("live: generation size %s not tried: %s", size_text(value), error)
                self.policy.moved(now_s, "size", tuple(self.show.gen_size))
                return
            self._wanted_size = tuple(value)
            self._start_size()
            log.info("live: generation size %s -> %s (%s): building", size_text(self.show.gen_size),
                     size_text(value), "frames ran late" if area(value) < area(self.show.gen_size)
                     else "headroom returned")
        else:
            self.policy.moved(now_s, kind, value)   # nothing to do: the policy may decide again

    # -- a scene's model (issue 28): loaded and the images on screen re-encoded off the loop --------

    model_name = None       # the model drawing now: a bundled name or a checkpoint's Path (session.py)
    default_model_name = None   # what a show on this machine draws without --model (session.py)
    _wanted_model = None    # (request number, spec) of the model being loaded

    def _ask_model(self, spec):
        """Load model `spec` (a bundled name or a checkpoint's path) in the background and draw
        with it once the images on screen are encoded by it; the old model draws until then.
        Nothing is asked for when the show draws with it already or is loading it. Whether a
        load was asked for."""
        target = self._wanted_model[1] if self._wanted_model else self.model_name
        if same_model(spec, target):
            return False
        if same_model(spec, self.model_name):
            self._wanted_model = None       # the model on screen: a load under way is dropped
            return False
        self._requests += 1
        self._wanted_model = (self._requests, spec)
        if not self._background.busy("model"):     # else the newest starts when the running one ends
            self._start_model()
        return True

    def _start_model(self):
        number, spec = self._wanted_model
        show = self.show
        size = tuple(show.gen_size)
        self._background.start("model", (number, self._state), self._load_model, spec, size, show.images,
                               show.precision, show.device, self._threads.get(size))

    @staticmethod
    def _load_model(spec, size, images, precision, device, threads):
        """(the flow, its Generator at the show's size, the images encoded by it): made here, in
        the background; a UserError for a checkpoint that is not there, not a flow, or cannot
        draw this size."""
        model = load_model(spec)
        check_gen_fits_model(size, model, flag=f"model {model_text(spec)}")
        check_gen_memory(size, model, flag=f"model {model_text(spec)}")
        generator = Generator(model, size=size, precision=precision, device=device, threads=threads)
        latents = generator.encode(images)
        generator.decode_float(latents[0])  # the session's first run (its allocations) here, not in a frame
        return model, generator, latents

    def _arrived_model(self, done):
        number, state = done.key
        if self._wanted_model is None or number != self._wanted_model[0]:
            if self._wanted_model is not None:  # a newer model was asked for while this one loaded
                self._start_model()
            return
        if state != self._state:            # the images or the size changed while it loaded: again
            self._start_model()
            return
        spec, self._wanted_model = self._wanted_model[1], None
        model, generator, latents = done.result
        old, before = self.show.generator, model_text(self.model_name)
        self.show.navigator.resize_images(latents)     # the same images, the picture where it was
        generator.bad_frames, old.bad_frames = generator.bad_frames + old.bad_frames, 0
        self.show.model, self.show.generator = model, generator
        self._generators.clear()            # the old model's, at other sizes
        self._swap(latents=latents, images=self.show.images, originals=self.show.originals,
                   layers=self.show.layers)
        self.work_ms.clear()                # the pacing learns the new model's cost afresh
        self.model_name = spec
        self.model_changes.append([round(time.perf_counter() - self._started, 3), before, model_text(spec)])
        self.announce(f"model {before} -> {model_text(spec)}")

    def _model_failed(self, done):
        """A model that did not load: one line in the terminal, one on screen; the show goes on
        with the model it has (and starts a newer request, if one came meanwhile)."""
        wanted = self._wanted_model
        if wanted is None or done.key[0] != wanted[0]:
            if wanted is not None:
                self._start_model()
            return
        self._wanted_model = None
        if not isinstance(done.error, UserError):
            self._fault(f"model {model_text(wanted[1])}", done.error)
            return
        self.errors += 1
        log.error("live: model %s not loaded: %s", model_text(wanted[1]), done.error)
        self.announce(f"model {model_text(wanted[1])}: not loaded (see the terminal)")


def model_spec(spec):
    """A model as the show keeps it: a bundled name as it is, a checkpoint as its absolute Path."""
    return str(spec) if str(spec) in BUNDLED_MODELS else Path(spec).resolve()


def same_model(a, b):
    """Whether two models (bundled names or paths; None: not known) are the same checkpoint file."""
    if a is None or b is None:
        return a is b
    return Path(resolve_checkpoint(a)).resolve() == Path(resolve_checkpoint(b)).resolve()


def model_text(spec):
    """A model's name on screen: a bundled one's name, a checkpoint's file name."""
    return "?" if spec is None else str(spec) if str(spec) in BUNDLED_MODELS else Path(spec).name
