"""bench: size parsing, the FLOP count, the auto rule, and `flowvj bench` end to end."""

import json

import pytest
import torch
from torch import nn

from flowvj.show.bench import (LADDER, MIN_SIZE, at_least, budget_ms, conv_gflop, parse_sizes, pick_from,
                          pick_gen_size, runnable)
from flowvj.errors import UserError
from flowvj.flow import FlowConfig, RealNVP
from flowvj.flow.fast import fuse_for_inference
from test_flow import perturbed


def _row(size, ms):
    return {"size": f"{size[0]}x{size[1]}", "width": size[0], "height": size[1], "decode_ms": ms}


def test_sizes_parse_as_width_by_height():
    assert parse_sizes("64x36, 128X72") == [(64, 36), (128, 72)]


@pytest.mark.parametrize("text", ["64x35", "64", "64x36x2", "ax36", "0x36", ""])
def test_a_bad_size_is_a_user_error_naming_the_flag(text):
    with pytest.raises(UserError, match="--sizes") as err:
        parse_sizes(text)
    assert "\n" not in str(err.value)


def test_ladder_climbs_in_pixels_through_even_16_by_9_sizes():
    pixels = [w * h for w, h in LADDER]
    assert pixels == sorted(pixels) and LADDER[0] == (64, 36) and LADDER[-1] == (1280, 720)
    assert all(w % 2 == 0 and h % 2 == 0 and w * 9 == h * 16 for w, h in LADDER)


def test_conv_flops_scale_with_pixels_and_match_a_count_at_the_size_itself():
    model = RealNVP.from_preset("lite")
    fused = fuse_for_inference(model)
    macs = []
    hooks = [m.register_forward_hook(lambda c, i, o: macs.append(
        o.numel() * c.in_channels // c.groups * c.kernel_size[0] * c.kernel_size[1]))
        for m in fused.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        fused.inverse(torch.zeros(1, 3, 36, 64))
    for hook in hooks:
        hook.remove()
    assert conv_gflop(model, (64, 36)) == pytest.approx(2 * sum(macs) / 1e9, rel=1e-12)
    assert conv_gflop(model, (128, 72)) == pytest.approx(4 * conv_gflop(model, (64, 36)), rel=1e-12)


def test_the_start_gives_the_decode_half_the_frame_time():
    """Less than the step-up rule's 70 % of the whole work (size_policy): see bench's docstring."""
    assert budget_ms(30) == pytest.approx(50 / 3) and budget_ms(60) == pytest.approx(25 / 3)


def test_auto_takes_the_largest_size_before_the_first_that_misses_the_budget():
    rows = [_row((64, 36), 5.0), _row((96, 54), 8.0), _row((128, 72), 16.0), _row((160, 90), 31.0),
            _row((192, 108), 15.0)]  # a noisy late rung is not climbed past a failure
    assert pick_from(rows, 60) == (96, 54)
    assert pick_from(rows, 30) == (128, 72)
    assert pick_from(list(reversed(rows)), 30) == (128, 72)


def test_auto_falls_back_to_the_smallest_size_when_none_fits():
    assert pick_from([_row((128, 72), 50.0), _row((64, 36), 40.0)], 60) == (64, 36)


def test_auto_never_picks_below_the_floor():
    rows = [_row((64, 36), 5.0), _row((96, 54), 12.0), _row((128, 72), 19.0), _row((192, 108), 40.0)]
    assert pick_from(rows, 60) == (64, 36)
    assert pick_from(rows, 60, min_size=MIN_SIZE) == (128, 72)      # none fits: the floor itself
    assert pick_from(rows, 30, min_size=(96, 54)) == (96, 54)
    assert pick_from(rows, 10, min_size=MIN_SIZE) == (192, 108)


def test_the_floor_is_by_pixels_and_a_ladder_short_of_it_keeps_its_top():
    assert MIN_SIZE == (128, 72)
    assert at_least(LADDER, MIN_SIZE) == list(LADDER[2:])
    assert at_least([(96, 72), (128, 96), (64, 48)], MIN_SIZE) == [(128, 96)]    # 4:3, 12288 px
    assert at_least(LADDER[:2], MIN_SIZE) == [(96, 54)]
    assert at_least(reversed(LADDER[:3]), None) == list(LADDER[:3])


def test_pick_gen_size_climbs_the_ladder_until_a_size_misses():
    model = perturbed(RealNVP.from_preset("tiny"))
    ladder = LADDER[:4]
    size, measured = pick_gen_size(model, 30, ladder=ladder, repeats=3)
    sizes = [(m["width"], m["height"]) for m in measured]
    assert sizes == list(ladder[:len(sizes)])
    fits = [m["decode_ms"] <= budget_ms(30) for m in measured]
    assert all(fits[:-1]) and (not fits[-1] or len(sizes) == len(ladder))
    assert size == pick_from(measured, 30)
    assert all(m["fps"] == pytest.approx(1e3 / m["decode_ms"]) for m in measured)


def test_pick_gen_size_measures_nothing_below_the_floor():
    model = perturbed(RealNVP.from_preset("tiny"))
    size, measured = pick_gen_size(model, 0.01, ladder=LADDER[:4], repeats=3, min_size=(96, 54))
    assert [m["size"] for m in measured] == ["96x54", "128x72", "160x90"] and size == (160, 90)
    size, measured = pick_gen_size(model, 1e6, ladder=LADDER[:4], repeats=3, min_size=MIN_SIZE)
    assert [m["size"] for m in measured] == ["128x72"] and size == MIN_SIZE    # nothing fits 1 us


def test_a_three_scale_flow_climbs_only_the_rungs_its_squeezes_divide():
    model = perturbed(RealNVP(FlowConfig(mid_channels=8, num_blocks=1, num_scales=3)))
    assert runnable(model, LADDER) == [s for s in LADDER if s[0] % 4 == 0 and s[1] % 4 == 0]
    assert (96, 54) not in runnable(model, LADDER) and (64, 36) in runnable(model, LADDER)
    _, measured = pick_gen_size(model, 0.01, ladder=LADDER[:3], repeats=3)  # every rung fits 100 s
    assert [m["size"] for m in measured] == ["64x36", "128x72"]


def test_bench_command_reports_consistent_figures_as_json(run_flowvj):
    result = run_flowvj("bench", "--json", "--sizes", "64x36,128x72", "--device", "cpu", "--repeats", 3)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["device"] == "cpu" and report["precision"] == "fp32" and report["backend"] == "onnx"
    small, large = report["sizes"]
    assert (small["size"], small["width"], small["height"], small["threads"]) == ("64x36", 64, 36, 1)
    assert large["size"] == "128x72" and large["threads"] in (1, 2)  # the faster of the two here
    assert large["gflop"] == pytest.approx(4 * small["gflop"], rel=1e-9)
    for row in report["sizes"]:
        assert row["fps"] == pytest.approx(1e3 / row["decode_ms"])
        assert row["gflops"] == pytest.approx(row["gflop"] / (row["decode_ms"] / 1e3))
        peak = report["peak_gflops"][str(row["threads"])]
        assert row["peak_pct"] == pytest.approx(100 * row["gflops"] / peak)
        assert row["p90_ms"] >= row["decode_ms"] and row["calls"] >= 3
    rows = report["sizes"]
    assert [a["fps"] for a in report["auto"]] == [30.0, 60.0]
    assert report["min_size"] == "128x72"
    for pick in report["auto"]:
        assert pick["budget_ms"] == pytest.approx(report["headroom"] * 1e3 / pick["fps"])
        w, h = pick_from(rows, pick["fps"], report["headroom"], min_size=MIN_SIZE)
        assert pick["size"] == f"{w}x{h}"


def test_bench_command_prints_the_table_and_the_auto_picks_with_the_floor(run_flowvj):
    result = run_flowvj("bench", "--sizes", "128x72", "--device", "cpu", "--repeats", 3)
    assert result.returncode == 0, result.stderr
    assert "| 128x72 | " in result.stdout
    assert "auto at 30 fps (decode <= 16.7 ms, at least 128x72): 128x72" in result.stdout
    assert "auto at 60 fps (decode <= 8.3 ms, at least 128x72): 128x72" in result.stdout


def test_bench_command_refuses_a_bad_size_in_one_line(run_flowvj):
    result = run_flowvj("bench", "--sizes", "64x36,65x36", "--device", "cpu")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--sizes" in lines[0] and "65x36" in lines[0]
