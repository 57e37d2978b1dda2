"""The live sink: a pygame-ce window that shows each frame, windowed or full-screen.

    with Window(size=(1280, 720), fullscreen=True, display=1) as window:
        while True:
            for action in window.poll():       # Action values; also plain strings ("quit", ...)
                ...
            window.show(frame, meter=dict(fps=60.0, frame_ms=4.2, tempo_bpm=128.0,
                                          rms=0.4, bands=[0.8, 0.3, 0.1]))

The frame (uint8 (h, w, 3) RGB: the show's, composed at the window's --size by the compositor,
so usually the window's own size) is uploaded to a streaming texture and the SDL renderer draws
it to the window (on the GPU where there is one), scaling with linear filtering only where the
window's size differs (resized, full-screen). `fit="fill"` (default) covers the whole window
and crops what overhangs, as a VJ would; `fit="letterbox"` shows the whole frame with black bars.

Keys -> actions (see `poll`): Esc, q, closing the window: quit; m: next_mode; n, space:
next_image; b: toggle_blackout; p: toggle_freeze; Tab, F1: toggle_meter; f: toggle_fullscreen;
c: toggle_captions; [ and ]: detail_down and detail_up (the compositor's detail amount, 0.1 a
press: brackets are the common less/more pair, unshifted on US and UK layouts, and were free).
The window applies toggle_meter, toggle_fullscreen and toggle_captions itself (its own state)
and still reports them; the engine maps the others. 1-9 (and the keypad's): the plain strings
"scene:1" .. "scene:9", recall the scene at that place in the --scenes file.

Captions: when the meters carry a new `notice` (a control just changed: "mode: magellan"), its
text is drawn centred near the bottom and fades out over NOTICE_FADE_S; `c` turns captions off
for the audience. Full-screen hides the mouse cursor.

pygame is imported when a Window is opened, never when this module is imported, so `flowvj
render` and `flowvj train` run on machines without a display or pygame. The module never
imports the model.
"""

import os
from enum import Enum

import numpy as np

from ..errors import UserError

FITS = ("fill", "letterbox")
NO_DISPLAY = ("no display to open a window on (no X11/Wayland session found); "
              "use `flowvj render` to make a video or `flowvj serve` to watch in a browser")
# SDL_WINDOWPOS_CENTERED_DISPLAY(n): the window's position, centred on display n.
_CENTRED_ON_DISPLAY = 0x2FFF0000
# Drivers SDL falls back to when there is no real display; accepted only when asked for by name.
_HEADLESS_DRIVERS = ("dummy", "offscreen")
NOTICE_FADE_S = 2.0  # a caption's life on screen, fading over its last half
_TEXT_CACHE_LIMIT = 256  # meter strings kept as textures; cleared when full (values churn slowly)


class Action(str, Enum):
    """What a key or window event asks for. A str Enum: `action == "quit"` holds."""

    QUIT = "quit"
    NEXT_MODE = "next_mode"
    NEXT_IMAGE = "next_image"
    TOGGLE_METER = "toggle_meter"
    TOGGLE_FULLSCREEN = "toggle_fullscreen"
    TOGGLE_CAPTIONS = "toggle_captions"
    TOGGLE_BLACKOUT = "toggle_blackout"
    TOGGLE_FREEZE = "toggle_freeze"
    DETAIL_DOWN = "detail_down"
    DETAIL_UP = "detail_up"


def fit_rect(frame_size, output_size, fit="fill"):
    """(x, y, w, h) where a frame of frame_size (w, h) is drawn in an output of output_size (w, h).

    "fill": scaled by the larger ratio so it covers the output, centred; the overhang (negative
    x or y) is clipped by the renderer. "letterbox": scaled by the smaller ratio, centred.
    """
    frame_w, frame_h = frame_size
    out_w, out_h = output_size
    ratios = (out_w / frame_w, out_h / frame_h)
    scale = max(ratios) if fit == "fill" else min(ratios)
    w, h = round(frame_w * scale), round(frame_h * scale)
    return (out_w - w) // 2, (out_h - h) // 2, w, h


def _key_actions(pygame):
    return {
        pygame.K_ESCAPE: Action.QUIT, pygame.K_q: Action.QUIT,
        pygame.K_m: Action.NEXT_MODE,
        pygame.K_n: Action.NEXT_IMAGE, pygame.K_SPACE: Action.NEXT_IMAGE,
        pygame.K_TAB: Action.TOGGLE_METER, pygame.K_F1: Action.TOGGLE_METER,
        pygame.K_f: Action.TOGGLE_FULLSCREEN,
        pygame.K_c: Action.TOGGLE_CAPTIONS,
        pygame.K_b: Action.TOGGLE_BLACKOUT, pygame.K_p: Action.TOGGLE_FREEZE,
        pygame.K_LEFTBRACKET: Action.DETAIL_DOWN, pygame.K_RIGHTBRACKET: Action.DETAIL_UP,
        # 1-9 (and the keypad's): "scene:N", recall the Nth scene of the --scenes file
        **{getattr(pygame, f"K_{n}"): f"scene:{n}" for n in range(1, 10)},
        **{getattr(pygame, f"K_KP{n}"): f"scene:{n}" for n in range(1, 10)},
    }


def _open_display(pygame, display):
    """Initialise pygame's display; UserError if there is none or `display` is not one of them."""
    try:
        pygame.display.init()
    except pygame.error:
        raise UserError(NO_DISPLAY) from None
    # With no X11/Wayland SDL 2.32 quietly falls back to the invisible "offscreen" driver: a
    # window nobody sees. Headless drivers count only when SDL_VIDEODRIVER names them (tests).
    driver = pygame.display.get_driver()
    requested = os.environ.get("SDL_VIDEODRIVER", "").lower()
    if driver in _HEADLESS_DRIVERS and driver not in requested:
        pygame.display.quit()
        raise UserError(NO_DISPLAY)
    count = pygame.display.get_num_displays()
    if not isinstance(display, int) or not 0 <= display < count:
        pygame.display.quit()
        plural = "display" if count == 1 else "displays"
        raise UserError(f"--display {display}: no such display; {count} {plural} found "
                        f"(expected 0..{count - 1})")


class Window:
    """A window (optionally full-screen on a chosen display) that shows frames scaled by SDL.

    size: (width, height) in pixels of the window when not full-screen.
    fullscreen: start full-screen ("desktop" full-screen: no video-mode switch) on `display`.
    display: index of the display to open on (0 = primary), centred on it.
    vsync: present in step with the display's refresh (falls back to no vsync where refused).
    show_meter: start with the on-screen meter visible (Tab / F1 toggles it).
    fit: "fill" (cover the window, crop the overhang) or "letterbox" (whole frame, black bars).
    """

    def __init__(self, size=(1280, 720), fullscreen=False, display=0, title="flowvj", vsync=True,
                 show_meter=False, fit="fill", captions=True):
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no banner on a show's stdout
        import pygame  # lazily: only a live show needs a display
        from pygame._sdl2 import video

        self._pygame, self._video = pygame, video
        self.fit = fit
        self.show_meter = bool(show_meter)
        self.captions = bool(captions)
        self._notice_id, self._notice, self._notice_at = None, "", 0.0
        self.fullscreen = False
        self._keys = _key_actions(pygame)
        self._texture = None
        self._texture_size = None
        self._font = None
        self._text = {}
        self._window = self._renderer = None

        _open_display(pygame, display)
        try:
            position = (_CENTRED_ON_DISPLAY | display, _CENTRED_ON_DISPLAY | display)
            self._window = video.Window(title, size=tuple(size), position=position)
            try:
                self._renderer = video.Renderer(self._window, vsync=vsync)
            except pygame.error:  # a driver that cannot sync still shows frames
                self._renderer = video.Renderer(self._window, vsync=False)
            if fullscreen:
                self.toggle_fullscreen()
        except BaseException:
            self.close()
            raise

    @property
    def renderer(self):
        """The SDL renderer (pygame._sdl2.video.Renderer): to read pixels back in tests."""
        return self._renderer

    @property
    def output_size(self):
        """(width, height) the renderer draws to, in pixels."""
        viewport = self._renderer.get_viewport()
        return viewport.width, viewport.height

    def show(self, frame, meter=None):
        """Present one frame: uint8 (h, w, 3) RGB, any size (the texture follows it).

        meter: optional dict with fps, frame_ms, tempo_bpm, rms (0..1) and bands (list of 0..1);
        drawn over the frame while the meter is on, missing values shown as "--".
        """
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be uint8 (h, w, 3), got {frame.dtype} {frame.shape}")
        pygame, renderer = self._pygame, self._renderer
        height, width = frame.shape[:2]
        if self._texture_size != (width, height):
            # Streaming: rewritten every frame. scale_quality=1 is SDL's "linear" scale mode
            # (the SDL_RENDER_SCALE_QUALITY hint, set on this texture alone).
            self._texture = self._video.Texture(renderer, (width, height), streaming=True,
                                                scale_quality=1)
            self._texture_size = (width, height)
        surface = pygame.image.frombuffer(np.ascontiguousarray(frame), (width, height), "RGB")
        self._texture.update(surface)
        renderer.draw_color = (0, 0, 0, 255)
        renderer.clear()
        renderer.blit(self._texture, pygame.Rect(fit_rect((width, height), self.output_size,
                                                          self.fit)))
        if self.show_meter:
            self._draw_meter(meter or {})
        self._draw_notice(meter or {})
        renderer.present()

    def poll(self):
        """Actions asked for since the last poll, in order (list of Action, which are strs).

        toggle_meter and toggle_fullscreen are also applied here, to this window.
        """
        pygame = self._pygame
        actions = []
        for event in pygame.event.get():
            if event.type in (pygame.QUIT, pygame.WINDOWCLOSE):
                action = Action.QUIT
            elif event.type == pygame.KEYDOWN:
                action = self._keys.get(event.key)
            else:
                action = None
            if action is None:
                continue
            if action is Action.TOGGLE_METER:
                self.show_meter = not self.show_meter
            elif action is Action.TOGGLE_FULLSCREEN:
                self.toggle_fullscreen()
            elif action is Action.TOGGLE_CAPTIONS:
                self.captions = not self.captions
            actions.append(action)
        return actions

    def toggle_fullscreen(self):
        """Switch between full-screen (on the display the window is on) and the window size."""
        if self.fullscreen:
            self._window.set_windowed()
        else:
            self._window.set_fullscreen(desktop=True)
        self.fullscreen = not self.fullscreen
        self._pygame.mouse.set_visible(not self.fullscreen)  # no cursor over the audience's picture

    def close(self):
        """Destroy the window and release pygame's display (one Window per process). Safe to
        call twice."""
        if self._window is None and self._renderer is None:
            return
        self._text.clear()
        self._texture = self._renderer = None
        if self._window is not None:
            self._window.destroy()
            self._window = None
        self._pygame.display.quit()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the meter ---------------------------------------------------------------------------

    def _text_texture(self, text):
        """A texture of `text` in white, made once per distinct string."""
        texture = self._text.get(text)
        if texture is None:
            if self._font is None:
                self._pygame.font.init()
                self._font = self._pygame.font.Font(None, 22)  # pygame's bundled font
            if len(self._text) >= _TEXT_CACHE_LIMIT:
                self._text.clear()
            surface = self._font.render(text, True, (255, 255, 255))
            texture = self._text[text] = self._video.Texture.from_surface(self._renderer, surface)
        return texture

    def _draw_meter(self, meter):
        """Top-left panel: fps and frame time, tempo, an RMS bar and one bar per band."""
        pygame, renderer = self._pygame, self._renderer

        def number(key, fmt):
            value = meter.get(key)
            return "--" if value is None else format(value, fmt)

        lines = (f"{number('fps', '.0f')} fps  {number('frame_ms', '.1f')} ms",
                 f"{number('tempo_bpm', '.1f')} BPM  {meter.get('mode') or ''}",
                 f"drawn at {meter.get('gen_size') or '--'}",
                 f"detail {meter.get('detail') or '--'} {number('detail_amount', '.1f')}")
        x, y, width, line_h, bar_h = 12, 12, 240, 22, 70
        renderer.draw_blend_mode = 1  # SDL_BLENDMODE_BLEND: a see-through panel
        renderer.draw_color = (0, 0, 0, 170)
        renderer.fill_rect(pygame.Rect(x, y, width, 8 + len(lines) * line_h + 16 + bar_h + 8))
        renderer.draw_blend_mode = 0
        for i, line in enumerate(lines):
            texture = self._text_texture(line)
            renderer.blit(texture, pygame.Rect(x + 8, y + 6 + i * line_h, texture.width,
                                               texture.height))
        top = y + 8 + len(lines) * line_h
        rms = float(np.clip(meter.get("rms") or 0.0, 0.0, 1.0))
        renderer.draw_color = (60, 60, 60, 255)
        renderer.fill_rect(pygame.Rect(x + 8, top, width - 16, 10))
        renderer.draw_color = (80, 220, 120, 255)
        renderer.fill_rect(pygame.Rect(x + 8, top, round((width - 16) * rms), 10))
        bands = np.clip(np.asarray(meter.get("bands") or [], dtype=float), 0.0, 1.0)
        if bands.size:
            bottom, slot = top + 16 + bar_h, (width - 16) / bands.size
            renderer.draw_color = (90, 160, 255, 255)
            for i, level in enumerate(bands):
                h = round(bar_h * level)
                renderer.fill_rect(pygame.Rect(round(x + 8 + i * slot), bottom - h,
                                               max(1, round(slot) - 2), h))

    def _draw_notice(self, meter):
        """The latest control change, centred near the bottom, fading out; nothing when
        captions are off or the meters carry no notice."""
        import time

        if meter.get("notice_id") != self._notice_id:
            self._notice_id = meter.get("notice_id")
            self._notice, self._notice_at = str(meter.get("notice") or ""), time.monotonic()
        age = time.monotonic() - self._notice_at
        if not (self.captions and self._notice) or age > NOTICE_FADE_S:
            return
        alpha = round(255 * min(1.0, 2.0 * (1.0 - age / NOTICE_FADE_S)))
        pygame, renderer = self._pygame, self._renderer
        texture = self._text_texture(self._notice)
        out_w, out_h = self.output_size
        w, h = texture.width * 2, texture.height * 2
        x, y = (out_w - w) // 2, out_h - h - max(24, out_h // 12)
        renderer.draw_blend_mode = 1
        renderer.draw_color = (0, 0, 0, alpha * 2 // 3)
        renderer.fill_rect(pygame.Rect(x - 12, y - 6, w + 24, h + 12))
        renderer.draw_blend_mode = 0
        texture.alpha = alpha
        texture.blend_mode = 1
        renderer.blit(texture, pygame.Rect(x, y, w, h))
