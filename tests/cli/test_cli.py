"""The installed `flowvj` command: bad input gives exit 2 and one line naming the path, never a
traceback; a corrupt image costs a warning, not the run; `eval --json` prints one object."""

import json
import math
import os
import shutil

from flowvj.flow import read_checkpoint


def _assert_one_line_error(result, path):
    """Exit 2 and exactly one non-blank stderr line, naming `path`, and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]


def _train_tiny(run_flowvj, data, out, *extra):
    return run_flowvj("train", "--preset", "tiny", "--image-size", 8, "--data", data, "--out", out,
                      "--batch-size", 8, "--threads", 1, *extra)


def _random_bytes_file(path):
    path.write_bytes(os.urandom(4096))
    return path


# ---------------------------------------------------------------- one-line errors


def test_train_with_a_missing_data_folder_fails_with_one_line_naming_it(run_flowvj, tmp_path):
    missing = tmp_path / "no-such-folder"
    _assert_one_line_error(_train_tiny(run_flowvj, missing, tmp_path / "run"), missing)


def test_train_with_an_empty_data_folder_fails_with_one_line_naming_it(run_flowvj, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line_error(_train_tiny(run_flowvj, empty, tmp_path / "run"), empty)


def test_eval_with_an_unreadable_checkpoint_fails_with_one_line_naming_it(run_flowvj, small_cifar10, tmp_path):
    ckpt = _random_bytes_file(tmp_path / "model.pt")
    result = run_flowvj("eval", "--model", ckpt, "--data", small_cifar10, "--limit", 10, "--threads", 1)
    _assert_one_line_error(result, ckpt)


def test_eval_with_a_missing_checkpoint_fails_with_one_line_naming_it(run_flowvj, small_cifar10, tmp_path):
    ckpt = tmp_path / "missing.pt"
    result = run_flowvj("eval", "--model", ckpt, "--data", small_cifar10, "--limit", 10, "--threads", 1)
    _assert_one_line_error(result, ckpt)


def test_resume_from_a_corrupt_checkpoint_fails_with_one_line_naming_it(run_flowvj, small_cifar10, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    ckpt = _random_bytes_file(out / "ckpt.pt")
    _assert_one_line_error(_train_tiny(run_flowvj, small_cifar10, out, "--max-steps", 2, "--resume"), ckpt)


def test_training_into_a_run_with_a_checkpoint_needs_resume(run_flowvj, one_epoch_run, small_cifar10, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copyfile(one_epoch_run / "ckpt.pt", out / "ckpt.pt")
    before = (out / "ckpt.pt").read_bytes()

    _assert_one_line_error(_train_tiny(run_flowvj, small_cifar10, out, "--max-steps", 2), out / "ckpt.pt")
    assert (out / "ckpt.pt").read_bytes() == before


# ---------------------------------------------------------------- corrupt data


def test_a_corrupt_png_among_good_ones_is_skipped_with_a_warning_naming_it(run_flowvj, small_cifar10, tmp_path):
    data = tmp_path / "images"
    good = sorted((small_cifar10 / "train" / "cat").glob("*.png"))[:16]
    (data / "cat").mkdir(parents=True)
    for path in good:
        shutil.copyfile(path, data / "cat" / path.name)
    corrupt = data / "cat" / "truncated.png"
    corrupt.write_bytes(good[0].read_bytes()[:200])  # a real PNG cut off inside its pixel data

    result = _train_tiny(run_flowvj, data, tmp_path / "run", "--max-steps", 2)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert any("skipped" in line and str(corrupt) in line for line in result.stderr.splitlines()), result.stderr
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 2


# ---------------------------------------------------------------- eval


def test_eval_json_prints_one_object_with_bits_per_dim_and_reconstruction_error(run_flowvj, one_epoch_run,
                                                                                small_cifar10):
    result = run_flowvj("eval", "--model", one_epoch_run / "ckpt.pt", "--data", small_cifar10,
                        "--limit", 50, "--json", "--threads", 1)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert set(report) == {"bits_per_dim", "nll_nats", "images", "max_reconstruction_error"}
    assert report["images"] == 50
    assert report["max_reconstruction_error"] < 1e-4
    assert math.isfinite(report["bits_per_dim"]) and 3 < report["bits_per_dim"] < 9


def test_serve_with_a_missing_image_set_fails_with_one_line_naming_it(run_flowvj, tmp_path):
    missing = tmp_path / "no-such-set"
    _assert_one_line_error(run_flowvj("serve", "--silent", "--image-sets", missing), missing)
