"""The one command, `flowvj`: parse (parser.py), call (commands.py), and turn what can go wrong
into an exit status: a user's mistake one line and 2, Ctrl-C 130, SIGTERM/SIGHUP 128 + signal."""

import logging
import os
import signal
import sys
import warnings

from ..errors import UserError
from .parser import build_parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"flowvj: warning: {message}", file=file or sys.stderr)


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt: every `with` and
    `finally` on the way out runs, so temporary files go and outputs close."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _log_to_terminal():
    """flowvj's own log lines (a control a DJ just changed, a device lost) at INFO, one line each."""
    logger = logging.getLogger("flowvj")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("flowvj: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv=None):
    """The command's exit status. A reader that goes away (`flowvj osc-addresses | head`) ends
    it quietly, as it ends `ls | head`: the Python documentation's way (signal.rst, "Note on
    SIGPIPE"), with stdout pointed at devnull so the interpreter's own flush at exit cannot fail
    again, and 141 (128 + SIGPIPE), what a shell reports for a command the pipe stopped."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()      # output still buffered meets the closed pipe here, not at exit
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv):
    # OpenMP threads that spin while waiting made training ~10x slower whenever another process
    # shared the cores; passive waiting costs little when the machine is idle. Must precede torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    warnings.showwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    _log_to_terminal()
    for signum in (signal.SIGTERM, signal.SIGHUP):  # train installs its own (it checkpoints)
        signal.signal(signum, _raise_stopped)
    try:
        args.run(args)
    except UserError as e:
        print(f"flowvj: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowvj: interrupted", file=sys.stderr)
        return 130
    except Stopped as e:
        name = signal.Signals(e.signum).name
        print(f"flowvj: stopped by {name}; nothing half-written was left behind", file=sys.stderr)
        return 128 + e.signum
    return 0
