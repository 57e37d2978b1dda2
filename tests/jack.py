"""A private JACK server for testing the MIDI path on a machine with no sound card and no ALSA
sequencer.

`jackd -n <name> -d dummy` runs the JACK graph on a timer, with no hardware; its MIDI ports
carry messages between clients exactly as with a real interface. Clients find the server by
JACK_DEFAULT_SERVER (in `server.env`, which `activate()` also puts in this process's environment
for rtmidi clients opened here), and never start a server of their own (JACK_NO_START_SERVER).
The server dies with the test process (PR_SET_PDEATHSIG), so a killed run leaves none behind.
"""

import os
import shutil
import subprocess
import time

import pytest

from pulse import _die_with_parent, log_tail, stop_process

PACKAGES = "jackd2"
PERIOD = 256    # frames per JACK period: MIDI is handed over once a period (5.8 ms at 44.1 kHz)


class JackServer:
    """start() / stop() a jackd on the dummy driver under a private server name."""

    def __init__(self, root, name=None):
        self.name = name or f"flowvj-test-{os.getpid()}"
        self.log_path = root / "jackd.log"
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1",
                        JACK_NO_AUDIO_RESERVATION="1", PYTHONUNBUFFERED="1")
        self.process = None
        self._saved = {}

    def start(self, timeout_s=20):
        """Start jackd and wait until a client can connect; fails the test (never skips)."""
        for tool in ("jackd", "jack_lsp"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed: run `make setup` as root, or install {PACKAGES}")
        command = ["jackd", "-n", self.name, "-d", "dummy", "-r", "44100", "-p", str(PERIOD)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"jackd exited with {self.process.returncode}:\n{self.log_tail()}")
            probe = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, timeout=10)
            if probe.returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"jackd did not answer within {timeout_s} s:\n{self.log_tail()}")

    def activate(self):
        """Point this process's JACK clients (rtmidi's) at the server; deactivate() undoes it."""
        for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
            self._saved[key] = os.environ.get(key)
            os.environ[key] = self.env[key]
        return self

    def deactivate(self):
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = {}

    def stop(self):
        """Terminate jackd (SIGKILL after 10 s); safe to call twice."""
        stop_process(self.process)
        self.process = None

    def log_tail(self, lines=20):
        return log_tail(self.log_path, lines)


def virtual_output(name, client="flowvj-test"):
    """A mido output port that flowvj can connect to as `<client>:<name>`: what a controller
    or a DJ's clock looks like on JACK."""
    import mido

    return mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output(name, virtual=True, client_name=client)


@pytest.fixture(scope="module")
def jack(tmp_path_factory):
    """A running private JACK server for the module, active in this process."""
    server = JackServer(tmp_path_factory.mktemp("jack")).start().activate()
    yield server
    server.deactivate()
    server.stop()
