"""When the live show changes its generation size or its frame rate: a pure, clock-free policy.

The live loop feeds it one call per shown frame and asks it, once a frame, whether to change;
time comes in as an argument (`now_s`, any monotonic seconds), so tests drive it with synthetic
time and synthetic loads. The loop owns the work (building a size takes seconds, in a thread);
the policy only decides. Call pattern:

    policy = SizePolicy(ladder, size, fps, floor=..., decode_ms={size: ms measured at start})
    each frame:  policy.observe(now_s, work_ms, decode_ms)   # decode_ms None: nothing decoded (freeze)
                 change = policy.decide(now_s)               # None | ("size", (W, H)) | ("fps", f)
    once the loop has applied a change (at once for fps; when the size's build arrives):
                 policy.moved(now_s, kind, value)
    if a build fails or is dropped: policy.moved(now_s, "size", policy.size)   # nothing changed

While a change is pending (`policy.pending`: decided, not yet reported by moved) decide()
returns None, so a build that takes seconds is never asked for twice. moved() accepts what the
loop actually applied (it need not be what was proposed), clears the frames seen so far (they
were timed at the old size or rate) and starts the hold.

The rules, and why each figure:
- Late: the median work of the last RECENT_FRAMES frames over the current period (1000 / fps),
  without a break for `window_s` (3 s). The median, not a high percentile: a tail of late frames
  comes from the other programs on the cores, which a smaller size does not cure (with the 90th
  percentile the browser path stepped from 192x108 to 64x36 and kept its p95). 15 frames (a
  quarter of a second at 60 fps, 0.6 s at 24) outvote 7 outliers; 3 s lets a brief spell (a tab
  loading, a garbage collection, the show's own start) pass, yet recovers an overloaded show in
  seconds.
- Down: the next smaller size on the ladder, never the smallest: one step may be enough, and
  each further one costs picture the show may not need to lose. Never below `floor` (128x72: a
  VJ would rather lose frames than the picture; 64x36 is colour blobs on a projector). At the
  floor the frame rate drops instead: to the rate at which the median work would take 90 % of
  the period, at least FPS_STEP (20 %) lower so it is worth a change, never below `min_fps`
  (24: film's rate, still motion). At the floor and min_fps the policy does nothing more.
- Up: restore the frame rate first (the show was asked for it), then the next size up, when the
  predicted work stays within `up_headroom` (70 %) of the period for `up_after_s` (20 s) without
  a break. The prediction is the frame's measured work with its decode replaced by the decode at
  the next size: the current decode scaled by the ratio of the start measurements (`decode_ms`)
  where both sizes were measured, else by the pixels (which overestimates small sizes, whose
  fixed costs do not grow: a safe error). 70 % leaves 30 % to the step-down line (work over the
  period), so a prediction 40 % short still holds. 20 s against 3 s down: a late show is visible
  now, a larger picture can wait, and a wrong step up costs two re-encodes and two visible jumps.
- Above the start size: allowed, up to the ladder's top (pass a shorter ladder to cap it). The
  start is measured in a fraction of a second, often while the machine is busy starting the show
  (or a browser); a size the show held for 20 s with 30 % to spare is better evidence than that.
- Hysteresis: at most one change per `hold_s` (10 s: the issue's figure; a build, its first slow
  frames and the loop's pacing settle well within it). A step up undone (a step down within
  `up_after_s` of it: the prediction was wrong, or the load came back) doubles the wait before
  the next step up, up to UP_BACKOFF_MAX times, and a step up that holds restores it: a load the
  prediction misjudges cannot make the size swing every 23 s forever.
"""

import math
import statistics
from collections import deque

RECENT_FRAMES = 15     # frames whose median work says late or on time
FPS_FIT = 0.9          # a lowered frame rate aims for the median work at this share of its period
FPS_STEP = 0.8         # a lowered frame rate is at most this share of the one before
FPS_UP_MIN = 1.1       # a raised frame rate is at least this multiple of the one before (or the target)
UP_BACKOFF_MAX = 8     # the wait before a step up grows to at most this many times up_after_s


def _area(size):
    return size[0] * size[1]


def _since(start_s, now_s):
    """When a spell began: start_s if it is going on, else now."""
    return now_s if start_s is None else start_s


def _name(size):
    return f"{size[0]}x{size[1]}"


class SizePolicy:
    """Decides the live show's generation size and frame rate from the frames' work (see the
    module docstring for the call pattern and the reasons).

    ladder: generation sizes (W, H); sorted here by pixels. size: the current one (on the ladder).
    fps: the show's target frame rate. floor: never step below this area; sizes under it are
    dropped, unless the ladder has nothing at or above it (then its largest size is the floor)
    or the show starts below it (then that start is the lowest). min_fps: the lowest rate it
    lowers to at the floor (at most fps). window_s, hold_s, up_after_s, up_headroom: see the
    module docstring. decode_ms: {(W, H): decode ms measured at start}, for predicting the next
    size up's decode.

    Attributes the loop reads: size, fps (the current ones), target_fps, ladder (what is left
    after the floor), pending, reason (a phrase saying why the last change was decided).
    """

    def __init__(self, ladder, size, fps, floor=(128, 72), min_fps=24.0, window_s=3.0, hold_s=10.0,
                 up_after_s=20.0, up_headroom=0.7, decode_ms=None):
        ladder = sorted({tuple(s) for s in ladder}, key=_area)
        size = tuple(size)
        if size not in ladder:
            raise ValueError(f"size {_name(size)} is not on the ladder {[_name(s) for s in ladder]}")
        at_floor = [s for s in ladder if _area(s) >= _area(floor)]
        lowest = min(at_floor[0] if at_floor else ladder[-1], size, key=_area)
        self.ladder = [s for s in ladder if _area(s) >= _area(lowest)]
        self.size = size
        self.target_fps = self.fps = float(fps)
        self.min_fps = min(float(min_fps), self.target_fps)
        self.window_s, self.hold_s = float(window_s), float(hold_s)
        self.up_after_s, self.up_headroom = float(up_after_s), float(up_headroom)
        self.decode_ms = {tuple(k): float(v) for k, v in (decode_ms or {}).items()}
        self.pending = False
        self.reason = ""
        self._frames = deque(maxlen=RECENT_FRAMES)   # (work_ms, decode_ms) of the latest frames
        self._late_since = self._headroom_since = None
        self._changed_s = None          # when the last change was applied
        self._up_s = None               # when the last step up was applied, until it has held
        self._up_wait_s = self.up_after_s

    # -- what the loop calls -------------------------------------------------------------------

    def observe(self, now_s, work_ms, decode_ms):
        """One shown frame: its work (navigate + decode + show, as the loop times it) and its
        decode, in ms. decode_ms None (or 0): nothing was decoded (a freeze); the frame says
        nothing about the size, and the clocks restart, so no stale spell carries across it."""
        if self._up_s is not None and now_s - self._up_s >= self.up_after_s:
            self._up_s, self._up_wait_s = None, self.up_after_s     # the step up held
        if not decode_ms:
            self._frames.clear()
            self._late_since = self._headroom_since = None
            return
        self._frames.append((float(work_ms), float(decode_ms)))
        if self.pending or len(self._frames) < RECENT_FRAMES:
            return
        late = self._work_ms() > 1000.0 / self.fps
        self._late_since = _since(self._late_since, now_s) if late else None
        up = not late and self._up_change() is not None
        self._headroom_since = _since(self._headroom_since, now_s) if up else None

    def decide(self, now_s):
        """None, or the one change to make now: ("size", (W, H)) or ("fps", frames_per_s)."""
        if self.pending or (self._changed_s is not None and now_s - self._changed_s < self.hold_s):
            return None
        change = None
        if self._late_since is not None and now_s - self._late_since >= self.window_s:
            change = self._down_change()
            self.reason = (f"frames ran late (median work {self._work_ms():.1f} ms over the "
                           f"{1000.0 / self.fps:.1f} ms period for {now_s - self._late_since:.0f} s)")
        elif self._headroom_since is not None and now_s - self._headroom_since >= self._up_wait_s:
            change = self._up_change()
            self.reason = (f"headroom (work {self._work_ms():.1f} ms; the change predicted within "
                           f"{100 * self.up_headroom:.0f} % of the period for "
                           f"{now_s - self._headroom_since:.0f} s)")
        self.pending = change is not None
        return change

    def moved(self, now_s, kind, value):
        """The loop applied a change (or, with the current value, gave one up): take it as the
        current state, forget the frames timed before it, and start the hold."""
        if kind == "size":
            value = tuple(value)
            if value not in self.ladder:
                raise ValueError(f"size {_name(value)} is not on the ladder "
                                 f"{[_name(s) for s in self.ladder]}")
            up, down = _area(value) > _area(self.size), _area(value) < _area(self.size)
            self.size = value
        elif kind == "fps":
            value = float(value)
            up, down = value > self.fps, value < self.fps
            self.fps = value
        else:
            raise ValueError(f"unknown change {kind!r}: expected 'size' or 'fps'")
        if down and self._up_s is not None:     # a step up undone before it held: wait longer
            self._up_wait_s = min(UP_BACKOFF_MAX * self.up_after_s, 2 * self._up_wait_s)
        if up or down:
            self._up_s = now_s if up else None
        self.pending = False
        self._changed_s = now_s
        self._frames.clear()
        self._late_since = self._headroom_since = None

    # -- the rules -----------------------------------------------------------------------------

    def _work_ms(self):
        return max(1e-3, statistics.median(work for work, _ in self._frames))

    def _down_change(self):
        """The next size down; at the floor, a lower frame rate; at both floors, nothing."""
        place = self.ladder.index(self.size)
        if place > 0:
            return ("size", self.ladder[place - 1])
        if self.fps > self.min_fps:
            fits = FPS_FIT * 1000.0 / self._work_ms()
            return ("fps", float(max(self.min_fps, math.floor(min(FPS_STEP * self.fps, fits)))))
        return None

    def _up_change(self):
        """The change the recent frames have room for: the frame rate back toward the target
        first, else the next size up; None when the predicted work would not fit."""
        work = self._work_ms()
        if self.fps < self.target_fps:
            fps = min(self.target_fps, math.floor(self.up_headroom * 1000.0 / work))
            if fps >= FPS_UP_MIN * self.fps or (fps == self.target_fps and fps > self.fps):
                return ("fps", float(fps))
            return None
        place = self.ladder.index(self.size)
        if place + 1 == len(self.ladder):
            return None
        larger = self.ladder[place + 1]
        fits = self.predicted_work_ms(larger) <= self.up_headroom * 1000.0 / self.fps
        return ("size", larger) if fits else None

    def predicted_work_ms(self, size):
        """The recent frames' median work with their decode scaled to `size`: by the ratio of
        the start measurements where both sizes have one (at least 1: noise must not promise a
        larger size for free), else by the pixels."""
        decode = statistics.median(d for _, d in self._frames)
        rest = statistics.median(w - d for w, d in self._frames)
        measured = self.decode_ms.get(self.size), self.decode_ms.get(tuple(size))
        if all(measured):
            ratio = max(1.0, measured[1] / measured[0])
        else:
            ratio = _area(size) / _area(self.size)
        return rest + decode * ratio
