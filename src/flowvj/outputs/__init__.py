"""Where frames go: a window (live), an MP4 file (offline, video.py), a browser page.

Each sink is its own module and nothing is imported here, so that opening one (e.g. the video
writer, which needs only PyAV) never imports another's optional dependency (a display, a web server).
"""
