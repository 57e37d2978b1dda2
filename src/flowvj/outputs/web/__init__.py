"""The browser view: an aiohttp server in its own thread sends each frame to a full-screen page
that also carries the controls (server.py; the page is static/index.html + static/view.js)."""

from .server import CONTROL_RANGES, MODES, WebOutput

__all__ = ["CONTROL_RANGES", "MODES", "WebOutput"]
