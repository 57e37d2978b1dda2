"""Bad input to the show commands: one clear line naming the flag or file and what was expected,
exit code 2, never a traceback, and nothing left behind (temporary files go on every way out,
signals included). Each case is a row of the table in issue 11, run through the installed command.
"""

import os
import signal
import subprocess
import time

import pytest

from conftest import FLOWVJ


def one_line_error(result, *needles, code=2):
    """The result failed with `code` and exactly one non-blank stderr line holding every needle."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("command", ["render", "play"])
def test_a_frame_beyond_8k_is_refused_up_front_with_the_limit(run_flowvj, command, tmp_path):
    extra = ["-o", tmp_path / "x.mp4"] if command == "render" else ["--silent"]
    result = run_flowvj(command, "--size", "100000x100000", *extra, timeout=60)
    one_line_error(result, "--size", "7680x4320")
    assert result.stdout == ""


def test_a_generation_size_the_machine_cannot_hold_is_refused(run_flowvj, tmp_path):
    result = run_flowvj("render", "--gen-size", "60000x40000", "-o", tmp_path / "x.mp4", timeout=120)
    one_line_error(result, "--gen-size", "GiB")


@pytest.mark.parametrize("args, needles", [
    (("render", "-o", "x.mp4", "--encoder-preset", "bogus"), ("--encoder-preset", "ultrafast", "veryslow")),
    (("serve", "--port", "70000"), ("--port", "0..65535")),
    (("serve", "--port", "-1"), ("--port", "0..65535")),
    (("play", "--gen-size", "65x36"), ("--gen-size", "even")),
    (("render", "--gen-size", "32x18", "-o", "x.mp4"), ("--gen-size 32x18", "multiples of 4")),
    (("play", "--silent", "--gen-size", "32x18"), ("--gen-size 32x18", "multiples of 4")),
    (("render", "-o", "x.mp4", "--size", "641x480"), ("--size", "even")),
    (("play", "--size", "wide"), ("--size", "WIDTHxHEIGHT")),
    (("play", "--silent", "--latency-ms", "-5"), ("--latency-ms", "0..2000")),
])
def test_bad_flags_are_one_line_naming_the_flag(run_flowvj, args, needles, tmp_path):
    one_line_error(run_flowvj(*args, timeout=60), *needles)


def test_serve_refuses_an_image_set_that_is_not_images_at_start(run_flowvj, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    result = run_flowvj("serve", "--silent", "--image-sets", notes, "--port", "0", timeout=60)
    one_line_error(result, "--image-sets", notes)
    assert "open http" not in result.stdout


def test_a_random_file_as_model_is_one_whole_line(run_flowvj, tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(os.urandom(5000))
    line = one_line_error(run_flowvj("render", "--model", model, "-o", tmp_path / "x.mp4", timeout=120), model)
    assert line.endswith("(or the bundled model)") and "weights_only" not in line


@pytest.mark.parametrize("command", ["serve", "play"])
def test_no_sound_output_device_is_said_first_and_suggests_silent(command, subprocess_env, tmp_path):
    # No sound server and no card: PortAudio finds no output device at all.
    env = dict(subprocess_env, PULSE_SERVER=f"unix:{tmp_path}/no-such-socket", SDL_VIDEODRIVER="dummy")
    result = subprocess.run([str(FLOWVJ), command, "--port" if command == "serve" else "--fps",
                             "0" if command == "serve" else "30"], env=env, capture_output=True,
                            text=True, timeout=120)
    one_line_error(result, "--silent")
    assert "open http" not in result.stdout


def unshare_mount(script):
    """Run `script` (sh) in a private mount namespace, where it may mount a small tmpfs: a real
    full disk or read-only file system that nothing outside the test sees."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail(f"unshare -m is needed for the disk-full test: {probe.stderr.decode()[-500:]}")
    return script


@pytest.mark.parametrize("setup, cause", [
    ("mount -t tmpfs -o size=300k tmpfs $D", "No space left on device"),
    ("mount -t tmpfs tmpfs $D && mount -o remount,ro $D", "Read-only file system"),
], ids=["full disk", "read-only"])
def test_render_to_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(setup, cause, subprocess_env, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = unshare_mount(
        f'D={disk}; {setup} && "{FLOWVJ}" render --duration 8 --gen-size 64x36 -o $D/out.mp4; '
        'rc=$?; ls -A $D >&2; exit $rc')
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=subprocess_env, capture_output=True,
                            text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    # the one error line, then `ls -A` of the disk: empty (no temporary file left)
    assert len(lines) == 1, result.stderr
    assert f"{disk}/out.mp4" in lines[0] and cause in lines[0], lines[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_render_removes_the_temporary_file_and_keeps_the_old_output(signum, subprocess_env, tmp_path):
    out = tmp_path / "show.mp4"
    out.write_bytes(b"the previous render")
    render = subprocess.Popen([str(FLOWVJ), "render", "--duration", "60", "--gen-size", "64x36", "-o", out],
                              env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob(".show.mp4.*.tmp")) and time.monotonic() < deadline:
        assert render.poll() is None, render.stderr.read()
        time.sleep(0.1)
    assert list(tmp_path.glob(".show.mp4.*.tmp")), "the render never started writing"
    time.sleep(0.5)
    render.send_signal(signum)
    _, err = render.communicate(timeout=60)
    result = subprocess.CompletedProcess(render.args, render.returncode, "", err)
    # the progress bar writes to stderr too: the last line is the one that matters
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert render.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err and signal.Signals(signum).name in lines[-1], err[-2000:]
    assert list(tmp_path.glob(".*.tmp")) == []
    assert out.read_bytes() == b"the previous render"
    del result


def test_every_option_of_every_command_has_help_and_the_version_prints(run_flowvj):
    import argparse

    from flowvj import __version__
    from flowvj.cli.parser import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"play", "live", "serve", "render", "bench", "analyze", "sync", "train", "eval", "compare"} <= set(commands)
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, (name, action.dest)
            text = sub.formatter_class(name)._get_help_string(action)
            if action.default not in (None, False) and action.option_strings:
                assert "default" in text, (name, action.dest, text)
    mode_help = commands["play"]._option_string_actions["--mode"].help
    assert all(mode in mode_help for mode in ("explore", "magellan", "weighted"))
    result = run_flowvj("--version", timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"flowvj {__version__}"
    assert "DJ" in parser.description
