"""A private PulseAudio daemon for testing the live audio path on a machine with no sound card.

The daemon has one null sink, `flowvj_test`; whatever is played into it comes back out of its
monitor source, `flowvj_test.monitor`. PortAudio reaches it through ALSA's pulse plugin
(Debian libasound2-plugins) as the device named 'pulse'. PortAudio reads its device list when
sounddevice is imported, so the code that opens streams runs in a subprocess started with
`daemon.env` (PULSE_SERVER, PULSE_SINK, PULSE_SOURCE): `daemon.run_python(code)`.

Runs as root too (pulseaudio only warns), with everything (socket, cookie, state) under a
private folder, never the user's own session.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SINK = "flowvj_test"
PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"
_LIBC = ctypes.CDLL(None)  # loaded here: nothing may be imported between fork and exec


def _die_with_parent():
    """In the daemon's child process: get SIGTERM when the test process dies, so that a killed
    or timed-out test run never leaves a daemon behind (Linux prctl PR_SET_PDEATHSIG)."""
    _LIBC.prctl(1, signal.SIGTERM)


def stop_process(process):
    """SIGTERM a daemon, SIGKILL after 10 s; None or an exited process is fine."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def log_tail(path, lines=20):
    """The last lines of a daemon's log, for a failure message ('' before it has one)."""
    path = Path(path)
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class PulseDaemon:
    """start() / stop() a pulseaudio process with a null sink; `env` reaches it."""

    def __init__(self, root, source=f"{SINK}.monitor", modules=()):
        """`source`: what PortAudio's 'pulse' device captures; `modules`: extra --load arguments
        (e.g. "module-sine-source source_name=flowvj_sine", a source that always plays a tone)."""
        self.root, self.modules = Path(root), list(modules)
        runtime = self.root / "runtime"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        self.socket = runtime / "native"
        self.log_path = self.root / "pulseaudio.log"
        self.env = dict(os.environ, HOME=str(self.root), XDG_RUNTIME_DIR=str(runtime),
                        XDG_CONFIG_HOME=str(self.root / "config"), PULSE_RUNTIME_PATH=str(runtime),
                        PULSE_STATE_PATH=str(self.root / "state"), PULSE_SERVER=f"unix:{self.socket}",
                        PULSE_SINK=SINK, PULSE_SOURCE=source, PYTHONUNBUFFERED="1")
        self.process = None

    def start(self, timeout_s=30):
        """Start the daemon and wait until it answers; fails the test (never skips) if it can't."""
        for tool in ("pulseaudio", "pactl"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed: run `make setup` as root, or install {PACKAGES}")
        command = ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n",
                   "--disallow-exit", "--disable-shm", "--use-pid-file=no", "--log-target=stderr",
                   f"--load=module-null-sink sink_name={SINK} rate=44100",
                   f"--load=module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
                   *(f"--load={module}" for module in self.modules)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"pulseaudio exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.pactl("info", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"pulseaudio did not answer within {timeout_s} s:\n{self.log_tail()}")

    def stop(self):
        """Terminate the daemon (SIGKILL after 10 s); safe to call twice."""
        stop_process(self.process)
        self.process = None

    def kill(self):
        """SIGKILL: the device vanishes the way a crashed sound server or a pulled cable does."""
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def pactl(self, *args, check=True):
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True,
                              timeout=20, check=check)

    def log_tail(self, lines=20):
        return log_tail(self.log_path, lines)

    def popen_python(self, code, *args):
        """Start `python -c code args...` in the daemon's environment, stdout and stderr piped."""
        return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=self.env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_die_with_parent)

    def run_python(self, code, *args, timeout_s=120):
        """Run `python -c code args...` in the daemon's environment; the CompletedProcess."""
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)
