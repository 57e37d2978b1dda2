"""Small things the command says or does not say: a reader that leaves early (`| head`) ends
flowvj quietly, and a --scenes file that is not there yet is named in one line."""

import os
import subprocess

import pytest

from conftest import FLOWVJ


@pytest.mark.parametrize("args", [("osc-addresses", "--json"), ("osc-addresses",), ("devices",)])
def test_a_command_printing_into_a_closed_pipe_ends_quietly(subprocess_env, args):
    """The reader is gone before flowvj writes a byte, so every write meets the closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([str(FLOWVJ), *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
                                env=subprocess_env, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode in (0, 141), result.stderr
    assert result.stderr == "", result.stderr


def test_osc_addresses_piped_through_head_prints_its_first_line_and_no_traceback(subprocess_env):
    flowvj = subprocess.Popen([str(FLOWVJ), "osc-addresses"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=subprocess_env)
    head = subprocess.Popen(["head", "-1"], stdin=flowvj.stdout, stdout=subprocess.PIPE)
    flowvj.stdout.close()           # head is the only reader: when it exits, the pipe is closed
    first, _ = head.communicate(timeout=120)
    err = flowvj.stderr.read().decode()
    flowvj.wait(timeout=120)
    assert first.decode() == "Controls (send them to --osc-port):\n"
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert flowvj.returncode in (0, 141), err


def test_a_scenes_file_not_there_yet_is_said_in_one_line_and_the_show_runs(subprocess_env, tmp_path):
    scenes = tmp_path / "later" / "scenes.toml"
    env = dict(subprocess_env, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")
    result = subprocess.run([str(FLOWVJ), "play", "--silent", "--scenes", scenes, "--duration", "1",
                             "--gen-size", "64x36"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    said = [line for line in result.stdout.splitlines() if str(scenes) in line]
    assert said == [f"--scenes {scenes}: not found; will be created on save"], result.stdout
    assert not scenes.exists()          # only a save makes it


def test_loop_repeats_a_silent_track_until_the_duration_and_needs_silent(subprocess_env, tmp_path):
    import json

    from flowvj.audio.synth import synth_track, write_track

    track, stats = tmp_path / "t.wav", tmp_path / "s.json"
    write_track(track, synth_track(bpm=128, duration_s=2.0, seed=1))
    result = subprocess.run([str(FLOWVJ), "play", track, "--silent", "--loop", "--duration", "5", "--gen-size",
                             "64x36", "--stats", stats], env=dict(subprocess_env, SDL_VIDEODRIVER="dummy"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(stats.read_text())
    assert figures["audio_s"] > 3.0     # more than the 2 s track: it wrapped
    assert figures["blas_threads"] == 1     # numpy's BLAS held to one thread (show/threads.py)
    refused = subprocess.run([str(FLOWVJ), "play", track, "--loop"], env=subprocess_env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "--loop" in refused.stderr and "--silent" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
