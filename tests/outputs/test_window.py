"""The live window, on real pygame-ce with SDL's dummy video driver and software renderer.

The dummy driver has no screen, but the software renderer draws into a real window surface, so
what the renderer holds (Renderer.to_surface) is exactly what a screen would show; events posted
with pygame.event.post go through the same queue as real key presses.
"""

import subprocess
import sys
import time

import numpy as np
import pytest

from flowvj.errors import UserError


@pytest.fixture
def headless(monkeypatch):
    """SDL's dummy video driver (one 1024x768 display) and software renderer for this test."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_RENDER_DRIVER", "software")


@pytest.fixture
def window(headless):
    from flowvj.outputs.window import Window

    with Window(size=(1280, 720), vsync=False) as win:
        yield win


def red_blue_frame():
    """32x32: left half pure red, right half pure blue."""
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:, :16] = (255, 0, 0)
    frame[:, 16:] = (0, 0, 255)
    return frame


def pixels(win):
    """What the renderer holds, as uint8 (height, width, 3)."""
    import pygame

    return pygame.surfarray.array3d(win.renderer.to_surface()).transpose(1, 0, 2)


def post_key(key):
    import pygame

    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))


def test_importing_the_module_does_not_import_pygame():
    code = "import sys, flowvj.outputs.window; assert 'pygame' not in sys.modules, 'pygame imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_small_frame_fills_the_window_left_red_right_blue(window):
    window.show(red_blue_frame())
    shown = pixels(window)
    assert shown.shape == (720, 1280, 3)
    for x, y in ((5, 5), (300, 360), (600, 715)):
        assert tuple(shown[y, x]) == (255, 0, 0)
    for x, y in ((1275, 5), (980, 360), (680, 715)):
        assert tuple(shown[y, x]) == (0, 0, 255)


def test_scaling_is_linear_across_the_middle(window):
    window.show(red_blue_frame())
    row = pixels(window)[360, 600:681].astype(int)
    # A nearest-neighbour upscale would jump from red to blue in one pixel; linear filtering
    # blends over one source pixel (1280/32 = 40 window pixels): red falls while blue rises.
    assert np.all(np.diff(row[:, 0]) <= 0) and np.all(np.diff(row[:, 2]) >= 0)
    assert np.all(row[:, 0] + row[:, 2] >= 250)  # a blend of the two, never darker
    midway = row[(row[:, 0] > 30) & (row[:, 2] > 30)]
    assert len(midway) >= 30, f"only {len(midway)} blended pixels between red and blue"


def test_letterbox_shows_the_whole_frame_between_black_bars(headless):
    from flowvj.outputs.window import Window

    with Window(fit="letterbox") as win:  # defaults otherwise: 1280x720, vsync on
        win.show(red_blue_frame())
        shown = pixels(win)
    assert tuple(shown[360, 100]) == (0, 0, 0) and tuple(shown[360, 1180]) == (0, 0, 0)
    assert tuple(shown[360, 300]) == (255, 0, 0) and tuple(shown[360, 980]) == (0, 0, 255)


def test_fullscreen_fills_the_display(headless):
    from flowvj.outputs.window import Window

    with Window(size=(1280, 720), fullscreen=True, vsync=False) as win:
        win.show(red_blue_frame())
        assert win.output_size == (1024, 768)  # the dummy driver's one display
        shown = pixels(win)
    assert tuple(shown[5, 5]) == (255, 0, 0) and tuple(shown[762, 1018]) == (0, 0, 255)


def test_tab_toggles_the_meter_which_draws_over_the_frame(window):
    meter = dict(fps=60.0, frame_ms=4.2, tempo_bpm=128.0, rms=0.5, bands=[0.9, 0.5, 0.2, 0.7])
    frame = np.full((32, 32, 3), 128, np.uint8)
    window.show(frame, meter=meter)
    without = pixels(window)[12:140, 12:252].copy()
    assert np.all(without == 128)

    post_key(__import__("pygame").K_TAB)
    assert window.poll() == ["toggle_meter"]
    window.show(frame, meter=meter)
    changed = np.any(pixels(window)[12:140, 12:252] != without, axis=2)
    assert changed.mean() > 0.5, f"meter changed only {changed.mean():.0%} of its area"


def test_keys_and_window_close_give_their_actions(window):
    import pygame

    from flowvj.outputs.window import Action

    window.poll()  # drop the window's own startup events
    for key in (pygame.K_m, pygame.K_n, pygame.K_SPACE, pygame.K_a, pygame.K_ESCAPE, pygame.K_q):
        post_key(key)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert window.poll() == ["next_mode", "next_image", "next_image", "quit", "quit", "quit"]
    post_key(pygame.K_f)
    assert window.poll() == [Action.TOGGLE_FULLSCREEN] and window.fullscreen


def test_show_cost_at_1280x720(window):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    meter = dict(fps=60.0, frame_ms=4.2, tempo_bpm=128.0, rms=0.5, bands=[0.9, 0.5, 0.2, 0.7])
    for show_meter in (False, True):
        window.show_meter = show_meter
        window.show(frames[0], meter=meter)  # warm-up: texture and text made once
        start = time.perf_counter()
        for frame in frames:
            window.show(frame, meter=meter)
        cost_ms = (time.perf_counter() - start) * 1000 / len(frames)
        print(f"\nWindow.show 32x32 -> 1280x720, meter {'on' if show_meter else 'off'}: "
              f"{cost_ms:.2f} ms/frame (SDL dummy driver, software renderer)")


def test_a_display_that_does_not_exist_is_a_user_error(headless):
    from flowvj.outputs.window import Window

    with pytest.raises(UserError, match=r"--display 3: no such display; 1 display found"):
        Window(display=3)


def test_no_display_at_all_is_a_user_error_pointing_to_render_and_serve(monkeypatch):
    from flowvj.outputs.window import Window

    for name in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError, match=r"^no display.*flowvj render.*flowvj serve") as raised:
        Window()
    assert "\n" not in str(raised.value)


def test_a_new_notice_is_drawn_as_a_caption_and_c_turns_captions_off(window):
    import pygame

    frame = np.zeros((18, 32, 3), np.uint8)
    window.show(frame, meter={"notice": "", "notice_id": 0})
    assert pixels(window).max() == 0
    window.show(frame, meter={"notice": "mode: magellan", "notice_id": 1})
    caption = pixels(window)[540:720].max(axis=2) > 200          # white text, low in the picture
    assert caption.sum() > 200 and pixels(window)[:360].max() == 0
    window.poll()
    post_key(pygame.K_c)
    assert window.poll() == ["toggle_captions"] and not window.captions
    window.show(frame, meter={"notice": "mode: explore", "notice_id": 2})
    assert pixels(window).max() == 0


def test_fullscreen_hides_the_mouse_cursor(headless):
    import pygame

    from flowvj.outputs.window import Window

    with Window(size=(640, 360), vsync=False) as win:
        assert pygame.mouse.get_visible()
        win.toggle_fullscreen()
        assert not pygame.mouse.get_visible()
        win.toggle_fullscreen()
        assert pygame.mouse.get_visible()


def test_the_meter_shows_dashes_until_the_tempo_locks(window):
    shown = []
    original = window._text_texture

    def record(text):
        shown.append(text)
        return original(text)

    window._text_texture = record
    window.show_meter = True
    window.show(np.zeros((18, 32, 3), np.uint8), meter={"tempo_bpm": None, "gen_size": "64x36", "mode": "explore"})
    assert any(text.startswith("-- BPM") for text in shown) and "drawn at 64x36" in shown
