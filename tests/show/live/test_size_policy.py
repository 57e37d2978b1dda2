"""SizePolicy: when the live show changes its generation size or frame rate, on synthetic time.

`run_show` drives the policy as the live loop does (observe and decide every frame, moved once a
change is applied; a size's build takes BUILD_S) with a decode time that the test sets per size
and per moment, so each rule is tested on the load it is about, with no sleeping and no model.
"""

import pytest

from flowvj.show.live.size_policy import SizePolicy

LADDER = [(64, 36), (96, 54), (128, 72), (160, 90), (192, 108), (256, 144)]
FLOOR = (128, 72)
FPS = 60.0                  # a period of 16.7 ms; up_headroom 0.7 leaves 11.7 ms
OVERHEAD_MS = 2.0           # a frame's work besides its decode (navigate, show)
BUILD_S = 2.0               # a size change arrives this long after it was decided


def area(size):
    return size[0] * size[1]


def by_pixels(ms_at_floor):
    """A decode cost that scales with the pixels: ms_at_floor at 128x72."""
    return lambda t, size: ms_at_floor * area(size) / area(FLOOR)


HEAVY = by_pixels(50.0)     # late at every size, even at 24 fps (52 ms of work)
IDLE = by_pixels(3.0)       # 160x90 and 192x108 fit with headroom at 60 fps, 256x144 does not


def run_show(policy, seconds, decode_ms, start_s=0.0):
    """Frames a period apart (or a frame's work apart, when that is longer) from start_s for
    `seconds`; returns the changes applied, as (time_s, kind, value)."""
    changes, building, t = [], None, start_s
    while t < start_s + seconds:
        decode = decode_ms(t, policy.size)
        work = decode + OVERHEAD_MS
        policy.observe(t, work, decode)
        if building is not None and t >= building[0]:
            policy.moved(t, "size", building[1])
            changes.append((t, "size", building[1]))
            building = None
        change = policy.decide(t)
        if change is not None:
            kind, value = change
            if kind == "size":
                building = (t + BUILD_S, value)
            else:
                policy.moved(t, kind, value)
                changes.append((t, kind, value))
        t += max(1.0 / policy.fps, work / 1000.0)
    return changes


def gaps(changes):
    return [b[0] - a[0] for a, b in zip(changes, changes[1:])]


def test_sustained_lateness_steps_to_the_next_size_down_not_the_smallest():
    policy = SizePolicy(LADDER, (256, 144), FPS)
    changes = run_show(policy, 9.0, lambda t, size: 25.0 if size == (256, 144) else 8.0)
    assert [(kind, value) for _, kind, value in changes] == [("size", (192, 108))]
    assert 3.0 + BUILD_S <= changes[0][0] < 3.5 + BUILD_S     # late for window_s, then built


def test_on_time_frames_never_change_anything():
    policy = SizePolicy(LADDER, (256, 144), FPS)
    assert run_show(policy, 120.0, lambda t, size: 13.0) == []      # 15 ms of work in 16.7 ms


def test_a_tail_of_late_frames_never_steps_down():
    """One frame in four three periods late: the median is on time (the mean, 19.5 ms, is not)."""
    frame = iter(range(10**6))
    policy = SizePolicy(LADDER, (256, 144), FPS)
    assert run_show(policy, 120.0, lambda t, size: 48.0 if next(frame) % 4 == 0 else 10.0) == []


def test_a_late_spell_shorter_than_the_window_never_steps_down():
    policy = SizePolicy(LADDER, (256, 144), FPS)
    spells = lambda t, size: 40.0 if t % 12.0 < 2.5 else 10.0   # noqa: E731 - 2.5 s late in every 12
    assert run_show(policy, 120.0, spells) == []


def test_a_late_spell_longer_than_the_window_steps_down_once():
    policy = SizePolicy(LADDER, (256, 144), FPS)
    changes = run_show(policy, 30.0, lambda t, size: 40.0 if 5.0 <= t < 8.6 else 6.0)
    assert [(kind, value) for _, kind, value in changes] == [("size", (192, 108))]


def test_a_freeze_breaks_a_late_spell():
    """Frames not decoded (decode None) say nothing about the size: 2 s late, a frozen frame, 2 s late."""
    policy = SizePolicy(LADDER, (256, 144), FPS)
    for i in range(240):
        t = i / FPS
        policy.observe(t, 30.0, None if i == 120 else 28.0)
        assert policy.decide(t) is None


def test_at_the_floor_lateness_lowers_the_frame_rate_to_min_fps_never_the_size():
    policy = SizePolicy(LADDER, (256, 144), FPS)
    changes = run_show(policy, 200.0, HEAVY)
    sizes = [value for _, kind, value in changes if kind == "size"]
    rates = [value for _, kind, value in changes if kind == "fps"]
    assert sizes == [(192, 108), (160, 90), FLOOR]                 # one rung at a time, down to the floor
    assert changes[-1][1] == "fps" and all(kind == "fps" for _, kind, _ in changes[len(sizes):])
    assert rates == sorted(rates, reverse=True) and rates[-1] == 24.0 and min(rates) >= 24.0
    assert (policy.size, policy.fps) == (FLOOR, 24.0)
    assert min(gaps(changes)) >= 10.0


def test_the_frame_rate_is_lowered_only_as_far_as_the_work_needs():
    """22 ms of work: at 60 fps late; at 40 fps (25 ms) on time, so it stops there."""
    policy = SizePolicy(LADDER, FLOOR, FPS)
    changes = run_show(policy, 120.0, by_pixels(20.0))
    assert [(kind, value) for _, kind, value in changes] == [("fps", 40.0)]


def test_sizes_under_the_floor_are_dropped_unless_the_ladder_has_nothing_else():
    assert SizePolicy(LADDER, (192, 108), FPS).ladder == LADDER[2:]
    assert SizePolicy(LADDER, (192, 108), FPS, floor=(64, 36)).ladder == LADDER
    assert SizePolicy(LADDER[:2], (96, 54), FPS).ladder == [(96, 54)]         # nothing at 128x72
    assert SizePolicy(LADDER, (64, 36), FPS).ladder == LADDER                 # a start below it stays
    with pytest.raises(ValueError, match="200x100"):
        SizePolicy(LADDER, (200, 100), FPS)


def test_returning_headroom_restores_the_frame_rate_first_then_steps_the_size_up():
    policy = SizePolicy(LADDER, (192, 108), FPS)
    loaded = run_show(policy, 80.0, HEAVY)
    assert (policy.size, policy.fps) == (FLOOR, 24.0)
    changes = run_show(policy, 220.0, IDLE, start_s=80.0)
    assert [(kind, value) for _, kind, value in changes] == [
        ("fps", 60.0), ("size", (160, 90)), ("size", (192, 108))]   # 256x144 would need 14 ms of 11.7
    assert changes[0][0] - 80.0 >= 20.0                             # up only after 20 s of headroom
    assert min(gaps(loaded + changes)) >= 10.0


def test_the_next_size_up_is_predicted_from_the_start_measurements_where_they_exist():
    """At 192x108 with 6.75 ms of decode: by the pixels, 256x144 would take 14 ms of work (over
    11.7); the start measured it at only 1.2x the cost of 192x108 (10.1 ms of work: it fits)."""
    measured = {(192, 108): 5.0, (256, 144): 6.0}
    for decode_ms, expected in ((None, []), (measured, [("size", (256, 144))])):
        policy = SizePolicy(LADDER, (192, 108), FPS, decode_ms=decode_ms)
        changes = run_show(policy, 40.0, lambda t, size: 6.75)
        assert [(kind, value) for _, kind, value in changes] == expected


def test_at_most_one_change_per_hold_under_an_alternating_load():
    """The load flips every 5 s: longer than the late window, shorter than the wait to step up."""
    policy = SizePolicy(LADDER, (256, 144), FPS)
    changes = run_show(policy, 300.0, lambda t, size: (HEAVY if t % 10.0 < 5.0 else IDLE)(t, size))
    assert changes and min(gaps(changes)) >= 10.0
    assert all(kind == "fps" or area(value) < area(before) for (_, kind, value), before in
               zip(changes, [(256, 144)] + [v for _, k, v in changes]) if kind == "size")    # only down


def test_a_step_up_the_load_cannot_hold_is_retried_ever_more_rarely():
    """256x144 decodes at 4x the cost of 192x108 here (late), though the start measured 1.5x: each
    step up is undone; the wait before the next one doubles (up to 8x), so the swings die out."""
    policy = SizePolicy(LADDER, (192, 108), FPS, decode_ms={(192, 108): 4.0, (256, 144): 6.0})
    changes = run_show(policy, 600.0, lambda t, size: 16.0 if size == (256, 144) else 4.0)
    ups = [t for t, kind, value in changes if value == (256, 144)]
    assert len(ups) >= 3 and min(gaps(changes)) >= 10.0
    waits = [b - a for a, b in zip(ups, ups[1:])]
    assert all(later > earlier - 0.1 for earlier, later in zip(waits, waits[1:]))   # 54, 94, 174, 174 s
    assert waits[-1] >= 3 * waits[0]


def test_no_second_decision_while_a_change_is_pending_and_a_failed_build_is_retried_after_the_hold():
    policy = SizePolicy(LADDER, (256, 144), FPS)
    proposals = []
    for i in range(int(35 * FPS)):
        t = i / FPS
        policy.observe(t, 30.0, 28.0)
        change = policy.decide(t)
        if change is not None:
            proposals.append((t, change))
        if t == pytest.approx(20.0):                    # the build failed: nothing changed
            assert policy.pending
            policy.moved(t, "size", policy.size)
    assert [change for _, change in proposals] == [("size", (192, 108))] * 2
    assert proposals[0][0] == pytest.approx(3.0, abs=0.3)       # late for window_s
    assert proposals[1][0] == pytest.approx(30.0, abs=0.1)      # the hold after the failed build
    assert policy.pending and policy.size == (256, 144)


def test_moved_refuses_a_size_off_the_ladder_and_an_unknown_kind():
    policy = SizePolicy(LADDER, (256, 144), FPS)
    with pytest.raises(ValueError, match="64x36"):
        policy.moved(0.0, "size", (64, 36))
    with pytest.raises(ValueError, match="'speed'"):
        policy.moved(0.0, "speed", 2.0)
