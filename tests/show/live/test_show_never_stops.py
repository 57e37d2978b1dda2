"""The show never stops (issue 25): a storm of controls and injected failures through the CLI.

`flowvj serve` runs as a VJ runs it (auto size, scenes, image sets, OSC), while a client sends 20
controls a second for two minutes: scene recalls with 8 and 12 images, image sets, modes,
temperature, freeze, blackout, next image, and generation sizes forced down and up. Meanwhile
the decode and the outputs fail now and then (FLOWVJ_FAULTS), an image of one set is deleted
before that set loads, and a folder a scene names is removed. The show must end only at
--duration, with exit 0, its stats written, each failure one line and no native thread left
running at exit (which aborted the process before: "terminate called without an active
exception").
"""

import json
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image
from pythonosc.udp_client import SimpleUDPClient

from conftest import FLOWVJ, SHARED
from flowvj.audio.synth import synth_track, write_track
from osc_show import read_osc_port

SHARED_IMAGES = SHARED / "data" / "images"
STORM_S = 120.0
RATE_HZ = 20.0


def image_folder(folder, sources):
    """Small JPEG copies of real photos (loading 2560-px originals 20 times a second would test
    the disk, not the show)."""
    folder.mkdir()
    for i, source in enumerate(sources):
        with Image.open(source) as image:
            image = image.convert("RGB")
            image.thumbnail((320, 320))
            image.save(folder / f"{i:02d}.jpg", quality=90)
    return folder


@pytest.mark.heavy
def test_a_storm_of_controls_and_failures_never_ends_the_show(subprocess_env, tmp_path):
    photos = sorted(p for p in SHARED_IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert len(photos) >= 14, f"real images missing in {SHARED_IMAGES}"
    eight = image_folder(tmp_path / "eight", photos[:8])
    twelve = image_folder(tmp_path / "twelve", photos[:12])
    doomed = image_folder(tmp_path / "doomed", photos[12:15])
    vanishing = image_folder(tmp_path / "vanishing", photos[3:6])
    scenes = tmp_path / "scenes.toml"
    scenes.write_text('[s8]\nimages = ["eight"]\nmode = "explore"\n\n'
                      '[s12]\nimages = ["twelve"]\nmode = "weighted"\ntemperature = 0.5\n\n'
                      '[gone]\nimages = ["vanishing"]\nmode = "magellan"\n\n'
                      '[doomed]\nimages = ["doomed/00.jpg", "doomed/01.jpg", "doomed/02.jpg"]\n')
    track, stats_path = tmp_path / "t.wav", tmp_path / "stats.json"
    write_track(track, synth_track(bpm=126, duration_s=STORM_S + 60, seed=3))
    env = dict(subprocess_env, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software",
               FLOWVJ_FAULTS="decode=0.02,output=0.005,control=0.01")
    show = subprocess.Popen([str(FLOWVJ), "serve", track, "--silent", "--port", "0", "--fps", "30",
                             "--gen-size", "auto",
                             "--scenes", scenes, "--image-sets", eight, twelve, "--osc-port", "0",
                             "--duration", str(STORM_S + 25), "--stats", stats_path],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port, _ = read_osc_port(show)
        assert port, show.stderr.read()[-3000:]
        time.sleep(5.0)     # the loop is running
        client, pick = SimpleUDPClient("127.0.0.1", port), random.Random(25)
        storm = [("/flowvj/scene", lambda: pick.choice(["s8", "s12", "gone", "doomed"])),
                 ("/flowvj/image_set", lambda: pick.choice(["eight", "twelve", "nope"])),
                 ("/flowvj/mode", lambda: pick.choice(["weighted", "magellan", "explore"])),
                 ("/flowvj/temperature", lambda: pick.uniform(0.05, 2.0)),
                 ("/flowvj/freeze", lambda: pick.randint(0, 1)),
                 ("/flowvj/blackout", lambda: pick.randint(0, 1)),
                 ("/flowvj/next_image", lambda: 1),
                 ("/flowvj/gen_size", lambda: pick.choice(["96x54", "128x72", "192x108", "256x144"]))]
        started, sent, broken = time.monotonic(), 0, False
        while time.monotonic() - started < STORM_S:
            if not broken and time.monotonic() - started > STORM_S / 3:
                (doomed / "01.jpg").unlink()        # deleted before its set loads
                shutil.rmtree(vanishing)            # a folder a scene names, gone
                broken = True
            address, value = pick.choice(storm)
            client.send_message(address, value())
            sent += 1
            time.sleep(max(0.0, started + sent / RATE_HZ - time.monotonic()))
        for address, value in (("/flowvj/freeze", 0), ("/flowvj/blackout", 0), ("/flowvj/mode", "weighted")):
            client.send_message(address, value)     # after the storm the show still answers
        out, err = show.communicate(timeout=180)
    finally:
        show.kill()
    assert show.returncode == 0, err[-4000:]
    assert "Traceback" not in err and "terminate called" not in err, err[-4000:]
    stats = json.loads(stats_path.read_text())
    assert stats["mode"] == "weighted", (stats, err[-3000:])
    assert stats["errors"] >= 10, (stats, err[-3000:])    # the injected failures were met, and survived
    assert stats["frames"] >= 5 * STORM_S, (stats, err[-3000:])
    areas = [[int(n) for n in size.split("x")] for change in stats["size_changes"] for size in change[1:]]
    steps = [a[0] * a[1] < b[0] * b[1] for a, b in zip(areas[::2], areas[1::2])]
    assert True in steps and False in steps, stats["size_changes"]     # stepped up and down
    lines = err.splitlines()
    assert any("injected decode failure" in line for line in lines), err[-3000:]
    assert any("not loaded" in line and "01.jpg" in line for line in lines), err[-3000:]
    assert any("no image set 'nope'" in line for line in lines), err[-3000:]
    assert any("vanishing" in line for line in lines), err[-3000:]
    assert "images =" not in out, out     # no scene dumps; failures are the one-line kind


def test_a_size_built_for_the_old_image_set_is_built_again_for_the_new_one(tmp_path):
    """The crash behind issue 25, made to happen every time: a size build starts for a set of
    4 images, a 6-image set arrives first, then the build for the 4 lands. It must be built
    again for the 6 (never swapped in: Navigator.resize_images refused 4 latents for 6)."""
    import torch

    from flowvj.images import load_show_images

    from flowvj.show.live.loop import LiveLoop

    from flowvj.show.pipeline import Show
    from flowvj.flow import RealNVP

    torch.manual_seed(0)
    photos = sorted(p for p in SHARED_IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    four, six = image_folder(tmp_path / "four", photos[:4]), image_folder(tmp_path / "six", photos[4:10])
    model = RealNVP.from_preset("tiny").eval()
    show = Show(model, load_show_images([four], (32, 32)), mode="explore", gen_size=(32, 32))
    loop = LiveLoop(show, None, [], image_sets={"four": [four], "six": [six]}, ladder=[(32, 32), (64, 32)])
    loop._apply("gen_size", "64x32")
    while loop._background.busy("size"):
        time.sleep(0.01)
    finished_size = loop._background.take()         # held back: it lands after the new set
    loop._apply("image_set", "six")
    while loop._background.busy("images"):
        time.sleep(0.01)
    loop._take_finished()
    assert loop.image_set == "six" and len(show.image_latents) == 6 and show.gen_size == (32, 32)
    loop._background._done.extend(finished_size)    # the stale build arrives now
    loop._take_finished()
    assert show.gen_size == (32, 32) and loop._background.busy("size")   # built again, for six
    while loop._background.busy("size"):
        time.sleep(0.01)
    loop._take_finished()
    assert tuple(show.gen_size) == (64, 32) and show.image_latents.shape[0] == 6
    assert show.navigator.image_latents.shape[0] == 6 and loop.errors == 0
    first = loop._generators[(32, 32)]      # kept: a step back reuses it, no new ONNX session
    loop._apply("gen_size", "32x32")
    while loop._background.busy("size"):
        time.sleep(0.01)
    loop._take_finished()
    assert show.generator is first and tuple(show.gen_size) == (32, 32) and show.image_latents.shape[0] == 6
    loop._background.close()


def test_asking_for_the_set_on_screen_while_another_loads_keeps_the_one_on_screen(tmp_path):
    """A page asks for B (loading), then a scene recalls A, the set on screen: B must not land
    over the scene when its load finishes."""
    import torch

    from flowvj.flow import RealNVP
    from flowvj.images import load_show_images
    from flowvj.show.live.loop import LiveLoop
    from flowvj.show.pipeline import Show

    torch.manual_seed(0)
    photos = sorted(p for p in (SHARED / "data" / "images").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    a, b = image_folder(tmp_path / "a", photos[:3]), image_folder(tmp_path / "b", photos[3:7])
    show = Show(RealNVP.from_preset("tiny").eval(), load_show_images([a], (32, 32)), gen_size=(32, 32))
    loop = LiveLoop(show, None, [], image_sets={"a": [a], "b": [b]})
    assert loop._apply("image_set", "b") == "image set: b (loading)"
    assert loop._apply("image_set", "b") is None                 # loading already: not asked twice
    assert loop._apply("image_set", "a") is None                 # on screen: the load of b is dropped
    while loop._background.busy("images"):
        time.sleep(0.01)
    loop._take_finished()
    assert loop.image_set == "a" and len(show.image_latents) == 3 and loop.errors == 0
    loop._background.close()
