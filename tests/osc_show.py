"""A show started with --osc-port 0, as the tests that steer one over OSC start it: the port it
printed, read from its stdout up to the line that says it is drawing."""


def read_osc_port(show):
    """(the OSC port the show `show` (a Popen with text stdout) listens on, or None; the lines it
    printed up to and including "drawing at ...", the start of its loop)."""
    port, printed = None, []
    for line in show.stdout:
        printed.append(line)
        if line.startswith("OSC: listening on 127.0.0.1:"):
            port = int(line.rsplit(":", 1)[1])
        if line.startswith("drawing at"):
            break
    return port, printed
