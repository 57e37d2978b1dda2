"""MIDI in: a mapping file binds CCs and notes to the catalog's controls, messages arrive over a
real MIDI path (a private JACK server, tests/jack.py) and reach the live loop's bus, MIDI learn
binds the next knob moved and saves the file, and bad input is one line."""

import json
import subprocess
import time

import mido
import pytest
import torch

from conftest import FLOWVJ
from flowvj.audio.sources import FileSource, SilentPlayback
from flowvj.audio.synth import synth_track, write_track
from flowvj.control import ControlBus
from flowvj.control.midi import (Binding, Mapping, MidiInput, learn_target, load_mapping,
                                 save_mapping)
from flowvj.images import load_show_images
from flowvj.show.live.loop import LiveLoop
from flowvj.show.pipeline import Show
from flowvj.errors import UserError
from flowvj.flow import RealNVP
from jack import jack, virtual_output  # noqa: F401  (fixture)
from test_bad_input import one_line_error
from test_pipeline import image_files  # noqa: F401  (fixture)
from test_flow import perturbed

MAPPING = """\
# a DJ's controller
[[map]]
cc = 7
control = "speed"

[[map]]
cc = 8
channel = 2
control = "blackout"

[[map]]
cc = 9
control = "next_image"

[[map]]
note = 36
control = "mode"
value = "weighted"

[[map]]
note = 37
control = "freeze"
"""


def cc(number, value, channel=1):
    return mido.Message("control_change", control=number, value=value, channel=channel - 1)


def note(number, velocity=100, channel=1):
    return mido.Message("note_on", note=number, velocity=velocity, channel=channel - 1)


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def mapping_file(tmp_path):
    path = tmp_path / "midi.toml"
    path.write_text(MAPPING)
    return path


# -- the mapping -------------------------------------------------------------------------------

def test_a_cc_is_scaled_onto_the_controls_range(mapping_file):
    mapping = Mapping(load_mapping(mapping_file))
    assert mapping.controls(cc(7, 127)) == [("speed", 4.0)]
    assert mapping.controls(cc(7, 0)) == [("speed", 0.0)]
    assert mapping.controls(cc(7, 64)) == [("speed", pytest.approx(64 / 127 * 4.0))]


def test_a_cc_switch_flips_at_64_once_and_only_on_its_channel(mapping_file):
    mapping = Mapping(load_mapping(mapping_file))
    assert mapping.controls(cc(8, 100)) == []                     # channel 1: not bound
    assert mapping.controls(cc(8, 100, channel=2)) == [("blackout", 1)]
    assert mapping.controls(cc(8, 120, channel=2)) == []          # still on: not posted again
    assert mapping.controls(cc(8, 10, channel=2)) == [("blackout", 0)]


def test_a_cc_button_fires_an_action_once_per_press(mapping_file):
    mapping = Mapping(load_mapping(mapping_file))
    presses = [mapping.controls(cc(9, value)) for value in (127, 127, 0, 127)]
    assert presses == [[("next_image", None)], [], [], [("next_image", None)]]


def test_notes_set_names_and_hold_switches(mapping_file):
    mapping = Mapping(load_mapping(mapping_file))
    assert mapping.controls(note(36)) == [("mode", "weighted")]
    assert mapping.controls(mido.Message("note_off", note=36)) == []
    assert mapping.controls(note(37)) == [("freeze", 1)]
    assert mapping.controls(note(37, velocity=0)) == [("freeze", 0)]      # note-on 0 is a release
    assert mapping.controls(mido.Message("note_on", note=38, velocity=90)) == []


def test_program_change_recalls_the_scene_at_that_place():
    assert Mapping().controls(mido.Message("program_change", program=2)) == [("scene", 3)]


def test_a_number_or_switch_bound_with_a_value_is_a_button_that_sets_it():
    mapping = Mapping([Binding("note", 38, "blackout", value=1), Binding("cc", 10, "speed", value=1.0)])
    assert mapping.controls(note(38)) == [("blackout", 1)]
    assert mapping.controls(note(38, velocity=0)) == []                  # the release sets nothing
    presses = [mapping.controls(cc(10, value)) for value in (127, 90, 0, 127)]
    assert presses == [[("speed", 1.0)], [], [], [("speed", 1.0)]]


@pytest.mark.parametrize("text, target", [
    ("blackout=1", ("blackout", 1)), ("blackout = 0", ("blackout", 0)), ("speed=2", ("speed", 2.0)),
    ("speed", ("speed", None)), ("mode=magellan", ("mode", "magellan")), ("", None),
])
def test_midi_learn_takes_a_name_or_name_equals_value(text, target):
    assert learn_target(text) == target


@pytest.mark.parametrize("text, needle", [
    ("speed=fast", "speed expects a number in 0..4"), ("speed=9", "speed expects a number in 0..4"),
    ("blackout=2", "blackout expects a number in 0..1"), ("next_image=1", "next_image takes no value"),
    ("mode", "mode is learned with its value"), ("warp=1", "unknown control 'warp'"),
])
def test_midi_learn_refuses_a_value_the_control_cannot_take(text, needle):
    with pytest.raises(ValueError, match=needle):
        learn_target(text)


HAND_WRITTEN = """\
# my nanoKONTROL2, scene 1
# (faders first, then the pads)

[[map]]
cc = 7      # fader 1
control = "speed"

[[map]]
cc = 0      # fader 2
channel = 2
control = "brightness"

# pads, left to right
[[map]]
note = 36
control = "mode"
value = "weighted"

[[map]]  # the red one
note = 37
control = "freeze"
"""


def test_a_save_keeps_the_users_comments_and_order_and_relearns_a_knob_in_place(tmp_path):
    path = tmp_path / "midi.toml"
    path.write_text(HAND_WRITTEN)
    mapping = Mapping(load_mapping(path))
    mapping.add(Binding("note", 37, "blackout", value=1))       # the red pad again: in its place
    mapping.add(Binding("cc", 21, "temperature", channel=3))     # a new knob: at the end
    save_mapping(path, mapping.bindings)
    relearned = HAND_WRITTEN.replace('control = "freeze"\n', 'control = "blackout"\nvalue = 1\n')
    assert path.read_text() == relearned + '\n[[map]]\ncc = 21\nchannel = 3\ncontrol = "temperature"\n'
    assert load_mapping(path) == mapping.bindings


def test_a_mapping_file_broken_by_hand_during_the_show_is_not_overwritten(tmp_path):
    path = tmp_path / "midi.toml"
    path.write_text("[[map]\n")
    with pytest.raises(ValueError, match="not valid TOML now"):
        save_mapping(path, [Binding("cc", 7, "speed")])
    assert path.read_text() == "[[map]\n"


def test_a_saved_mapping_reads_back_the_same(tmp_path, mapping_file):
    bindings = load_mapping(mapping_file)
    save_mapping(tmp_path / "copy.toml", bindings)
    assert load_mapping(tmp_path / "copy.toml") == bindings
    assert bindings[1] == Binding("cc", 8, "blackout", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.toml", "midi.toml"]   # no temporary left


@pytest.mark.parametrize("text, needles", [
    ('[[map]]\ncc = 7\ncontrol = "speed\n', ("not valid TOML", "line 3")),
    ('[[map]]\ncc = 7\ncontrol = "speed"\n\n[[map]]\ncc = 8\ncontrol = "sped"\n', ("line 5", "unknown control 'sped'")),
    ('[[map]]\ncc = 200\ncontrol = "speed"\n', ("line 1", "cc expects a number 0..127")),
    ('[[map]]\nnote = 3\ncontrol = "mode"\n', ("line 1", "mode needs value")),
    ('[[map]]\nnote = 3\ncontrol = "mode"\nvalue = "fast"\n', ("line 1", "mode expects one of")),
    ('[[map]]\ncc = 1\nnote = 3\ncontrol = "speed"\n', ("line 1", "exactly one of cc")),
    ('[[map]]\ncc = 1\nchannel = 17\ncontrol = "speed"\n', ("line 1", "channel expects 1..16")),
    ('[knobs]\ncc = 1\n', ("unknown table 'knobs'",)),
])
def test_a_malformed_mapping_is_one_line_naming_the_file_and_the_line(tmp_path, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_mapping(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--midi-map {path}: ")
    for needle in needles:
        assert needle in message, message


# -- over a real MIDI path (JACK) ----------------------------------------------------------------

@pytest.fixture
def controller(jack):  # noqa: F811
    port = virtual_output("ctl")
    yield port
    port.close()


def connected(midi, controller):
    """Wait until `midi` hears `controller` (JACK connects a port within a period or so, and a
    busy machine makes that longer): send an unbound CC (it posts nothing) until one arrives."""
    assert wait_for(lambda: controller.send(cc(127, 0)) or midi.received > 0), "the port never connected"
    time.sleep(0.05)
    midi.received = midi.posted = 0
    return midi


def test_controls_from_a_midi_port_reach_the_bus(controller, mapping_file):
    bus = ControlBus()
    with MidiInput(bus, "flowvj-test:ctl", mapping_file) as midi:
        connected(midi, controller)
        for message in (cc(7, 127), note(36), cc(50, 3), mido.Message("program_change", program=0)):
            controller.send(message)
        assert wait_for(lambda: midi.posted == 3)     # the unbound CC 50 posts nothing
        events = bus.drain()
    assert [(e.name, e.value, e.source) for e in events] == [
        ("speed", 4.0, "midi"), ("mode", "weighted", "midi"), ("scene", 1, "midi")]


def test_every_message_arrives_once_in_order_while_python_is_busy(controller, mapping_file):
    """A frame loop holding the GIL must not make JACK's process thread late (which repeated
    one event and lost the next when rtmidi called Python from that thread)."""
    import threading

    bus, stop = ControlBus(), threading.Event()

    def busy():                         # pure Python: holds the GIL for its whole switch interval
        while not stop.is_set():
            sum(i * i for i in range(20000))

    with MidiInput(bus, "ctl", mapping_file) as midi:
        connected(midi, controller)
        spinners = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
        for thread in spinners:
            thread.start()
        for i in range(300):
            controller.send(cc(7, i % 128))
            if i % 3 == 0:
                time.sleep(0.002)
        assert wait_for(lambda: midi.posted >= 300, timeout_s=20)
        stop.set()
        events = bus.drain()
    assert [e.value for e in events] == [pytest.approx(i % 128 / 127 * 4.0) for i in range(300)]


def test_midi_learn_binds_the_next_cc_and_saves_the_mapping_atomically(controller, mapping_file):
    before, bus = load_mapping(mapping_file), ControlBus()
    with MidiInput(bus, "ctl", mapping_file) as midi:
        connected(midi, controller)
        assert midi.handles("midi_learn") and not midi.handles("speed")
        assert midi.handle("midi_learn", "sensitivity") == "MIDI learn: move a control for sensitivity"
        controller.send(cc(21, 127, channel=3))            # the knob moved: learned, not applied
        assert wait_for(lambda: midi.saves == 1)
        controller.send(cc(21, 32, channel=4))             # learned on channel 3 only
        controller.send(cc(21, 32, channel=3))
        assert wait_for(lambda: midi.posted == 1)        # in order: channel 4's came first
        events = bus.drain()
    assert [(e.name, e.value) for e in events] == [("midi_learned", "CC 21 ch 3 -> sensitivity"),
                                                   ("sensitivity", pytest.approx(32 / 127 * 4.0))]
    saved = load_mapping(mapping_file)
    assert saved[-1] == Binding("cc", 21, "sensitivity", 3) and saved[:-1] == before
    assert [p.name for p in mapping_file.parent.iterdir()] == [mapping_file.name]     # no temporary left


def test_midi_learn_refuses_what_it_cannot_bind(controller, mapping_file):
    with MidiInput(ControlBus(), "ctl", mapping_file) as midi:
        assert midi.handle("midi_learn", "warp") is None
        assert midi.handle("midi_learn", "mode") is None                    # which mode?
        assert midi.handle("midi_learn", "mode=weighted") == "MIDI learn: move a control for mode = weighted"
        assert midi.handle("midi_learn", "") == "MIDI learn off"


def test_midi_learn_of_blackout_1_makes_a_pad_that_blacks_out_and_keeps_the_comments(controller, tmp_path):
    path = tmp_path / "midi.toml"
    path.write_text(HAND_WRITTEN)
    bus = ControlBus()
    with MidiInput(bus, "ctl", path) as midi:
        connected(midi, controller)
        assert midi.handle("midi_learn", "blackout=1") == "MIDI learn: move a control for blackout = 1"
        controller.send(note(40, channel=5))                # the pad pressed: learned, not applied
        assert wait_for(lambda: midi.saves == 1)
        controller.send(note(40, velocity=0, channel=5))    # released: nothing
        controller.send(note(40, channel=5))                # pressed again: blackout = 1
        controller.send(cc(7, 127))                          # the hand-written fader still works
        assert wait_for(lambda: midi.posted == 2)
        events = bus.drain()
    assert [(e.name, e.value, e.source) for e in events] == [
        ("midi_learned", "note 40 ch 5 -> blackout = 1", "midi"), ("blackout", 1, "midi"), ("speed", 4.0, "midi")]
    learned = '\n[[map]]\nnote = 40\nchannel = 5\ncontrol = "blackout"\nvalue = 1\n'
    assert path.read_text() == HAND_WRITTEN + learned          # comments and order kept, the pad added


@pytest.fixture(scope="module")
def show_parts(image_files, tmp_path_factory):  # noqa: F811
    torch.manual_seed(0)
    model = perturbed(RealNVP.from_preset("tiny"))
    track = tmp_path_factory.mktemp("midi") / "t.wav"
    write_track(track, synth_track(bpm=128, duration_s=30.0, seed=4))
    return model, load_show_images(image_files, 32), track


class Script:
    """An output that acts at given frames (sends MIDI, posts on the bus) and keeps captions."""

    def __init__(self, steps):
        self.steps, self.frames, self.applied, self.loop = dict(steps), 0, [], None

    def show(self, frame, meters):
        self.frames += 1
        step = self.steps.pop(self.frames, None)
        if step is not None:
            step(self.loop)
        if not self.steps:
            self.loop.bus.post("quit")

    def control_applied(self, name, value, caption):
        self.applied.append(caption)


def test_a_live_loop_takes_knobs_notes_and_midi_learn_from_a_controller(show_parts, controller, mapping_file):
    model, images, track = show_parts
    bus = ControlBus()
    midi = connected(MidiInput(bus, "ctl", mapping_file), controller)
    script = Script({
        3: lambda loop: (controller.send(cc(7, 127)), controller.send(note(36))),
        10: lambda loop: loop.bus.post("midi_learn", "sensitivity", source="page"),
        14: lambda loop: controller.send(cc(22, 100)),     # learned
        20: lambda loop: controller.send(cc(22, 64)),      # applied
        26: lambda loop: None,
    })
    with SilentPlayback(FileSource(track)) as source:
        script.loop = LiveLoop(Show(model, images, mode="explore"), source, [script, midi], fps=30, bus=bus)
        script.loop.run(duration_s=20)
    midi.close()
    loop = script.loop
    assert loop.speed == 4.0 and loop.show.navigator.mode_name == "weighted"
    assert loop.sensitivity == pytest.approx(64 / 127 * 4.0)
    assert "MIDI learn: move a control for sensitivity" in script.applied, script.applied
    assert load_mapping(mapping_file)[-1] == Binding("cc", 22, "sensitivity", 1)


# -- through the command -----------------------------------------------------------------------

@pytest.fixture
def jack_env(jack, subprocess_env):  # noqa: F811
    """The flowvj command's environment, with the private JACK server."""
    return dict(subprocess_env, JACK_DEFAULT_SERVER=jack.name, JACK_NO_START_SERVER="1",
                SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")


def run_flowvj_on_jack(env, *args, timeout=60):
    return subprocess.run([str(FLOWVJ), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_play_takes_midi_controls_from_a_port(jack_env, controller, mapping_file, tmp_path):
    track, stats_path = tmp_path / "t.wav", tmp_path / "s.json"
    write_track(track, synth_track(bpm=128, duration_s=10, seed=0))
    env = jack_env
    show = subprocess.Popen([str(FLOWVJ), "play", track, "--silent", "--duration", "6", "--gen-size", "64x36",
                             "--midi-in", "flowvj-test:ctl", "--midi-map", mapping_file, "--stats", stats_path],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = []
        for line in show.stdout:
            printed.append(line)
            if line.startswith("drawing at"):
                break
        assert any(line.startswith("MIDI: controls from flowvj-test:ctl (5 bindings") for line in printed), printed
        controller.send(note(36))                # waits on the bus until the loop drains it
        controller.send(cc(7, 127))
        out, err = show.communicate(timeout=120)
    finally:
        show.kill()
    assert show.returncode == 0, err[-3000:]
    assert json.loads(stats_path.read_text())["mode"] == "weighted"
    assert "mode: weighted" in err and "speed: 4.00x" in err, (err, printed)


def test_an_unknown_midi_port_is_one_line_listing_the_ports(jack_env, controller):
    result = run_flowvj_on_jack(jack_env, "play", "--silent", "--midi-in", "nanoKONTROL")
    one_line_error(result, "--midi-in nanoKONTROL: no MIDI input port matches", "flowvj-test:ctl (JACK)")


def test_a_malformed_midi_map_is_one_line_before_the_model_loads(run_flowvj, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[map]]\ncc = 7\ncontrol = "speed"\n[[map]]\ncc = 7\ncontrol = 3\n')
    result = run_flowvj("play", "--silent", "--midi-in", "x", "--midi-map", path, timeout=60)
    one_line_error(result, f"--midi-map {path}: [[map]] at line 4: unknown control 3")
    assert "drawing at" not in result.stdout


def test_devices_lists_the_midi_inputs(jack_env, controller):
    result = run_flowvj_on_jack(jack_env, "devices")
    assert result.returncode == 0, result.stderr
    assert "MIDI inputs" in result.stdout and "flowvj-test:ctl  (JACK)" in result.stdout, result.stdout
