"""The live controls applied: every input (keys, the page, OSC, MIDI, scenes) posts on the control
bus; the loop drains it once a frame, in its own thread, and applies each event here. Each change
is announced (one terminal line, a caption on the window and the page); one that fails is one
line and an `errors` count, never the end of the show. A part of LiveLoop (loop.py), kept apart
so that the loop's module holds its clock and pacing."""

import logging
import math
import time

from ...control.catalog import MODES
from ...control.scenes import image_set_name, save_scenes, scene_now
from ...errors import UserError
from ..navigate import lerp, slerp
from ..sizes import size_text
from .faults import maybe_fail
from .jobs import model_text, same_model

log = logging.getLogger("flowvj.show.live")
NOTICE_S = 2.5  # how long a control change's caption stays on screen
MAX_SCENES = 99  # scenes a show keeps (saving more is refused): keys 1-9, the page's list, the file
ERROR_LOG_S = 5.0  # a failure's line is logged again at most this often
DETAIL_STEP = 0.1  # the window's [ and ] keys (detail_down, detail_up): the detail amount by this much
# The audience's scene (serve --audience; _audience_scene): recalled only this long after the last
# scene change from any source, with at least AUDIENCE_SCENE_VOTES ballots and AUDIENCE_SCENE_SHARE
# of the room behind it, and AUDIENCE_SCENE_LEAD times the second scene's ballots.
AUDIENCE_SCENE_HOLD_S = 45.0
AUDIENCE_SCENE_VOTES, AUDIENCE_SCENE_SHARE, AUDIENCE_SCENE_LEAD = 3, 0.2, 1.25
AUDIENCE = "audience"   # the source of a scene recall the audience asked for


class ControlsApplied:
    """LiveLoop's controls (see LiveLoop's docstring for the list); mixed into LiveLoop."""

    audience_on = True      # the VJ's `audience` switch: the audience's votes lean the show while on
    audience_bias = None    # the latest ("audience_bias", {...}) the page's server posted (_lean_on_audience)
    scene_changed_s = None  # time.monotonic() of the last scene recalled or saved, from any source
    _audience_posted_s = None   # ... and of the audience's recall posted last (_audience_scene)

    SILENT_ACTIONS = ("toggle_meter", "toggle_fullscreen", "toggle_captions")

    def controls(self):
        """The live controls' current values, as the page shows them."""
        values = {"mode": self.show.navigator.mode_name, "speed": self.speed,
                  "sensitivity": self.sensitivity, "brightness": self.brightness,
                  "blackout": int(self.blackout), "freeze": int(self.frozen),
                  "audience": int(self.audience_on)}
        if self.show.compositor is not None:
            values["detail"] = self.show.compositor.amount
        if self.temperature:
            values["temperature"] = self.temperature
        if self.image_set is not None:
            values["image_set"] = self.image_set
        learners = [o.output for o in self.attached if o.handles("midi_learn")]
        values["midi_learn"] = getattr(learners[0], "armed", "") if learners else ""   # "": not armed
        return values

    def _apply(self, action, value=None, source=""):
        """Apply one control; returns the caption announcing it, or None if nothing changed.
        A control that fails is one line and an `errors` count, never the end of the show."""
        names, navigator = list(MODES), self.show.navigator
        try:
            maybe_fail("control")
            if action == "quit":
                self.running = False
                return None
            if action == "next_mode":
                self._set_mode(names[(names.index(navigator.mode_name) + 1) % len(names)])
                return f"mode: {navigator.mode_name}"
            if action == "mode" and value in MODES:
                self._set_mode(value)
                return f"mode: {value}"
            if action == "next_image":
                navigator.next_image()
                return "next image"
            if action == "temperature":
                self.temperature = navigator.set_temperature(float(value))
                return f"temperature: {self.temperature:.2f}"
            if action in ("speed", "sensitivity") and float(value) >= 0 and math.isfinite(float(value)):
                setattr(self, action, float(value))
                return f"{action}: {float(value):.2f}x"
            if action in ("detail", "detail_down", "detail_up"):
                return self._set_detail(action, value)
            if action == "brightness" and 0.0 <= float(value) <= 1.0:
                self.brightness = float(value)
                return f"brightness: {self.brightness:.2f}"
            if action in ("blackout", "toggle_blackout"):
                self.blackout = (not self.blackout) if action == "toggle_blackout" else bool(int(value))
                return "blackout" if self.blackout else "blackout off"
            if action in ("freeze", "toggle_freeze"):
                self.frozen = (not self.frozen) if action == "toggle_freeze" else bool(int(value))
                return "freeze" if self.frozen else "freeze off"
            if action == "image_set":
                if value not in self.image_sets:
                    offered = ", ".join(map(str, self.image_sets)) or "none (see --image-sets)"
                    return f"no image set {value!r}; offered: {offered}"
                if not self._ask_image_set(value):
                    return None         # showing or loading already: encoding it again only costs time
                return f"image set: {value} (loading)"
            if action == "gen_size":
                return self._want_size(value)
            if action in ("audience", "audience_bias"):
                return self._lean_on_audience(action, value)
            if action in ("scene", "save_scene"):   # keys 1-9 send the scene's place (an int)
                if source == AUDIENCE and not (self._audience_may(value)
                                               and self.scene_changed_s == self._audience_posted_s):
                    return None     # the switch went off, or a scene changed, while it waited
                return self._scene_control(action, value, source)
            handler = next((o for o in self.attached if o.handles(action)), None)
            if handler is not None:     # a control of a listener's own (MIDI learn's "midi_learn")
                return handler.handle(action, value)
            if action == "midi_learn":  # no listener takes it: say why, on the page and the window
                return "MIDI learn needs a MIDI controller: start the show with --midi-in NAME"
            if action not in self.SILENT_ACTIONS:
                log.info("live: ignored control %r = %r", action, value)
        except (UserError, TypeError, ValueError) as error:
            log.warning("live: ignored control %r = %r: %s", action, value, error)
        except Exception as error:  # noqa: BLE001 - one control must never end the show
            self._fault(f"control {action}", error)
        return None

    def _fault(self, where, error):
        """A failure the show survives: counted in `errors`, one line in the terminal (the same
        line at most once per ERROR_LOG_S, with how many times it happened meanwhile)."""
        self.errors += 1
        line = f"live: {where} failed, the show goes on: {type(error).__name__}: {error}".splitlines()[0]
        now = time.perf_counter()
        last, repeats = self._error_lines.get(line, (None, 0))
        if last is None or now - last >= ERROR_LOG_S:
            log.error("%s%s", line, f" (and {repeats} more times)" if repeats else "")
            self._error_lines[line] = (now, 0)
        else:
            self._error_lines[line] = (last, repeats + 1)
        if len(self._error_lines) > 256:        # bounded, whatever the messages
            self._error_lines.clear()

    def announce(self, text):
        """One line in the terminal and a caption on screen (window and page) for a while."""
        log.info("%s", text)
        self.notice, self.notice_id = text, self.notice_id + 1
        self._notice_until = time.perf_counter() + NOTICE_S
        values = self.controls()
        for output in self.attached:
            try:
                output.update_controls(values)
            except Exception as error:  # noqa: BLE001 - one output's failure must not end the show
                self._fault(f"{output.name} controls", error)

    QUANTISED = ("mode", "next_mode", "image_set", "scene")

    def _drain_controls(self, bar_line=False):
        """Post the outputs' controls on the bus, then apply everything on it; with a clock and a
        quantum, bar-quantised changes wait in _deferred for the next bar line."""
        for output in self.attached:
            try:
                for action in output.poll():
                    name = str(action.value if hasattr(action, "value") else action)
                    if name.startswith("scene:"):       # keys 1-9: the scene at that place in the file
                        self.bus.post("scene", int(name[6:]), source="key")
                        continue
                    self.bus.post(name, source="key")
                for name, value in output.pending_controls():
                    self.bus.post(name, value, source="page")
            except Exception as error:  # noqa: BLE001 - one output's failure must not end the show
                self._fault(f"{output.name} controls", error)
        events = [(e.name, e.value, e.source) for e in self.bus.drain()]
        quantise = self.quantum is not None and self.stage.clock_beat is not None
        if bar_line or (self._deferred and not quantise):   # the bar line, or the clock gone: now
            events, self._deferred = self._deferred + events, []
        for name, value, source in events:
            if quantise and not bar_line and name in self.QUANTISED:
                if source == AUDIENCE and any(event[0] == name for event in self._deferred):
                    continue        # the audience's recall never replaces one the VJ asked for
                self._deferred = [event for event in self._deferred if event[0] != name]  # the latest
                self._deferred.append((name, value, source))
                continue
            caption = self._apply(name, value, source)
            if caption:
                try:
                    self.announce(caption)
                except Exception as error:  # noqa: BLE001 - a caption must not end the show
                    self._fault("caption", error)
                for output in self.attached:
                    try:
                        output.control_applied(name, value, caption)
                    except Exception as error:  # noqa: BLE001 - as above
                        self._fault(f"{output.name} listener", error)
        try:
            self._audience_scene()
        except Exception as error:  # noqa: BLE001 - the audience must not end the show
            self._fault("audience scene", error)

    def _scene_control(self, action, name, source=""):
        """Recall a scene (by name, or by its place from 1) or save the show's state as one, in
        the --scenes file (`scene_file`); see control/scenes.py. Returns the caption."""
        navigator = self.show.navigator
        if action == "save_scene":
            model = None if same_model(self.model_name, self.default_model_name) else self.model_name
            allowed = getattr(self.scenes.get(str(name)), "audience", None)    # the file's flag stays
            scene = scene_now(name, self.image_sets.get(self.image_set), navigator.mode_name,
                              navigator.interpolation, self.temperature, self.speed,
                              self.sensitivity, self.brightness, self.show.gen_size, model, allowed,
                              detail=getattr(self.show.compositor, "amount", None))
            if getattr(self, "scene_file", None) is None:
                raise UserError("no --scenes FILE to save the scene in")
            if scene.name not in self.scenes and len(self.scenes) >= MAX_SCENES:
                raise UserError(f"{self.scene_file} holds {MAX_SCENES} scenes already, the most a show keeps")
            self.scenes[scene.name] = self._unsaved[scene.name] = scene   # written off the loop
            self.scene, self.scene_changed_s = scene.name, time.monotonic()
            return f"scene saved: {scene.name}"
        names = list(self.scenes)
        if isinstance(name, int) and 1 <= name <= len(names):
            name = names[name - 1]
        scene = self.scenes.get(name) if isinstance(name, str) else None
        if scene is None:
            log.info("live: no scene %r (scenes: %s)", name, ", ".join(names) or "none")
            return None
        if scene.interpolation and scene.interpolation != navigator.interpolation:
            navigator.interpolation = scene.interpolation
            navigator.interpolate = slerp if scene.interpolation == "slerp" else lerp
        if scene.temperature is not None:
            self.temperature = navigator.set_temperature(scene.temperature)
        restyled = navigator.interpolate is not navigator.mode.interpolate   # the mode's own is old
        if (scene.mode and scene.mode != navigator.mode_name) or restyled:
            self._set_mode(scene.mode or navigator.mode_name)      # cross-faded
        for key in ("speed", "sensitivity", "brightness"):
            if getattr(scene, key) is not None:
                setattr(self, key, getattr(scene, key))
        if scene.detail is not None and self.show.compositor is not None:
            self.show.compositor.amount = scene.detail
        image_set = image_set_name(self.image_sets, scene)
        if image_set is not None:
            self._ask_image_set(image_set)
        loading = scene.model is not None and self._ask_model(scene.model)    # jobs.py, off the loop
        self.scene, self.scene_changed_s = scene.name, time.monotonic()   # the audience waits anew
        kept = scene.gen_size and tuple(scene.gen_size) != tuple(self.show.gen_size)
        pick = " (the audience's pick)" if source == AUDIENCE else ""
        return f"scene: {scene.name}{pick}" + (f" (drawn at {size_text(self.show.gen_size)}, not its "
                                               f"{size_text(scene.gen_size)})" if kept else "") + (
            f" (loading model {model_text(scene.model)})" if loading else "")

    def _lean_on_audience(self, action, value):
        """The audience (serve --audience): `audience` is the VJ's switch (0/1; returns the
        caption); `audience_bias` the page's server's latest {"image_set", "images": [share per
        image], "mood": -1..1} (no caption: it changes as the room votes). While the switch is
        on, the navigator leans on it (Navigator.set_bias); the image shares only for the set
        they were counted on, while it is the one shown; off, the show is as without an audience."""
        if action == "audience":
            self.audience_on = bool(int(value))
        else:
            if not isinstance(value, dict):
                raise TypeError(f"audience_bias expects a dict, got {type(value).__name__}")
            self.audience_bias = value
        bias, navigator = self.audience_bias if self.audience_on else None, self.show.navigator
        if bias is None:
            navigator.set_bias(None, 0.0)
        else:
            shares = bias.get("images")
            counted_here = bias.get("image_set") == self.image_set and shares
            if not counted_here or len(shares) != len(navigator.image_latents) or not any(shares):
                shares = None       # counted on another set (or the set is loading): the mood only
            navigator.set_bias(shares, float(bias.get("mood", 0.0)))
        if action == "audience":
            return "audience: on (the votes lean the show)" if self.audience_on else "audience: off"
        return None

    def _audience_scene(self):
        """(Once a frame, after the controls.) Recall the room's scene when the rule holds: the
        switch on; the leading scene allowed (`audience = true`), not the one on, with at least
        max(AUDIENCE_SCENE_VOTES, AUDIENCE_SCENE_SHARE of the room) ballots and
        AUDIENCE_SCENE_LEAD times the second's; AUDIENCE_SCENE_HOLD_S since the last scene change
        from any source (the show's start counts as one); and no recall already waiting for the
        bar line. The recall is posted on the bus like any other, so it waits for the bar line
        as they do, and a VJ's recall posted after it wins. Checked every frame, not when a vote
        arrives: a room that has made up its mind sends no new tally while the hold runs out."""
        if not self.audience_on or not self.audience_bias:
            return
        now = time.monotonic()
        if self.scene_changed_s is None:
            self.scene_changed_s = now
        if now - self.scene_changed_s < AUDIENCE_SCENE_HOLD_S:
            return
        if any(event[0] == "scene" for event in self._deferred):
            return
        name = self._audience_leader()
        if name is not None and name != self.scene:
            self.bus.post("scene", name, source=AUDIENCE)
            self.scene_changed_s = self._audience_posted_s = now    # one post, applied or deferred next

    def _audience_leader(self):
        """The allowed scene the room clearly wants (see _audience_scene), or None."""
        votes = self.audience_bias.get("scene")
        if not isinstance(votes, dict) or not isinstance(votes.get("counts"), dict):
            return None
        counts = sorted(((count, name) for name, count in votes["counts"].items()
                         if self._audience_may(name) and isinstance(count, int)), reverse=True)
        if not counts:
            return None
        first, name = counts[0]
        second = counts[1][0] if len(counts) > 1 else 0
        room = votes["voters"] if isinstance(votes.get("voters"), int) else first
        clear = first >= max(AUDIENCE_SCENE_VOTES, AUDIENCE_SCENE_SHARE * room) and (
            first >= AUDIENCE_SCENE_LEAD * second)
        return name if clear else None

    def _audience_may(self, name):
        """Whether the audience may recall scene `name` now: the switch on, the scene allowed."""
        scene = self.scenes.get(name) if isinstance(name, str) else None
        return self.audience_on and scene is not None and scene.audience is True

    def _set_detail(self, action, value):
        """The compositor's detail amount (0..2): set (`detail`), or a DETAIL_STEP down or up (the
        window's keys); the next frame composed uses it. Returns the caption."""
        compositor = self.show.compositor
        if compositor is None:
            return "detail: no compositor in this show"
        if action == "detail":
            amount = float(value)
            if not 0.0 <= amount <= 2.0:
                raise ValueError(f"detail expects a number in 0..2, got {value!r}")
        else:
            step = DETAIL_STEP if action == "detail_up" else -DETAIL_STEP
            amount = min(2.0, max(0.0, round(compositor.amount + step, 2)))
        compositor.amount = amount
        if compositor.method == "off":
            return f"detail {amount:.1f}: no effect with --detail off"
        return f"detail: {amount:.1f} ({compositor.method})"

    def _set_mode(self, name):
        options = {"temperature": self.temperature} if name == "weighted" and self.temperature else {}
        self.show.navigator.set_mode(name, **options)

    def write_scenes(self):
        """Write the scenes saved live and not yet written, now, in this thread (at the end of
        the show; during it, _save_scenes writes them in the background)."""
        unsaved, self._unsaved = list(self._unsaved.values()), {}
        if unsaved:
            try:
                save_scenes(self.scene_file, unsaved)
            except Exception as error:  # noqa: BLE001 - the stats are still written
                self.errors += 1
                log.error("live: scenes not saved: %s", error)
