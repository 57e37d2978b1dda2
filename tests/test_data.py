"""Data loading: every image mode to uint8 RGB, folders with cache, the CIFAR-10 archive, real data."""

import hashlib
import io
import os
import pickle
import re
import signal
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowvj import data
from flowvj.data import load_cifar_archive, load_dataset, load_image, load_image_folder
from flowvj.errors import UserError

from conftest import SHARED

SHARED_CIFAR10 = SHARED / "data" / "cifar10"


def _save(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _solid(mode, colour, size=(40, 30)):
    return Image.new(mode, size, colour)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


# ---------------------------------------------------------------- single images, every mode


def test_rgb_image_is_resized_to_a_square_uint8_array(tmp_path):
    image = load_image(_save(_solid("RGB", (10, 200, 30)), tmp_path / "a.png"), 32)
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert (image == (10, 200, 30)).all()


def test_rgba_is_composited_over_black(tmp_path):
    image = load_image(_save(_solid("RGBA", (255, 100, 0, 128)), tmp_path / "a.png"), 32)
    assert np.array_equal(image[0, 0], [128, 50, 0])


def test_la_is_composited_over_black(tmp_path):
    image = load_image(_save(_solid("LA", (200, 0)), tmp_path / "a.png"), 32)
    assert (image == 0).all()


def test_grey_l_becomes_equal_rgb_channels(tmp_path):
    image = load_image(_save(_solid("L", 100), tmp_path / "a.png"), 32)
    assert (image == 100).all()


def test_palette_image_keeps_its_colours(tmp_path):
    palette = _solid("RGB", (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    image = load_image(_save(palette, tmp_path / "a.gif"), 32)
    assert (image == (0, 0, 255)).all()


def test_palette_transparent_index_becomes_black(tmp_path):
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([255, 255, 255, 0, 255, 0] + [0] * 762)
    palette.paste(0, (0, 0, 40, 20))  # top half: index 0, declared transparent
    palette.info["transparency"] = 0
    path = tmp_path / "a.png"
    palette.save(path, transparency=0)
    image = load_image(path, 40)
    assert (image[:20] == 0).all() and (image[20:] == (0, 255, 0)).all()


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.full((32, 32), 65535, dtype=np.uint16)
    values[:, 16:] = 32896  # 32896 / 257 = 128 exactly
    path = _save(Image.fromarray(values), tmp_path / "a.png")
    with Image.open(path) as saved:
        assert saved.mode == "I;16"
    image = load_image(path, 32)
    assert (image[:, :16] == 255).all() and (image[:, 16:] == 128).all()


def test_32_bit_integer_tiff_is_read_as_16_bit_range(tmp_path):
    path = _save(Image.fromarray(np.full((32, 32), 65535, dtype=np.int32)), tmp_path / "a.tif")
    with Image.open(path) as saved:
        assert saved.mode == "I"
    assert (load_image(path, 32) == 255).all()


def test_cmyk_is_converted_to_rgb(tmp_path):
    image = load_image(_save(_solid("CMYK", (0, 255, 255, 0)), tmp_path / "a.tif"), 32)
    assert (image == (255, 0, 0)).all()


def test_wide_image_is_center_cropped(tmp_path):
    thirds = np.zeros((120, 360, 3), dtype=np.uint8)
    thirds[:, :120, 0] = thirds[:, 120:240, 1] = thirds[:, 240:, 2] = 255  # red | green | blue
    image = load_image(_save(Image.fromarray(thirds), tmp_path / "wide.png"), 32)
    assert image.shape == (32, 32, 3)
    assert (image[..., 1] >= 250).all() and (image[..., [0, 2]] <= 5).all()


def test_tall_image_is_center_cropped(tmp_path):
    bands = np.zeros((300, 100, 3), dtype=np.uint8)
    bands[100:200] = 255  # white middle third of a tall black image
    assert (load_image(_save(Image.fromarray(bands), tmp_path / "tall.png"), 32) >= 250).all()


def test_small_image_is_upsampled(tmp_path):
    assert load_image(_save(_solid("RGB", (1, 2, 3), (8, 8)), tmp_path / "a.bmp"), 32).shape == (32, 32, 3)


def test_corrupt_file_raises_user_error_naming_it(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with pytest.raises(UserError, match="broken.png"):
        load_image(path, 32)


# ---------------------------------------------------------------- folders


def _every_mode_folder(root):
    """One file per mode and format the loader claims to read, at assorted sizes."""
    grey16 = np.full((50, 70), 40000, dtype=np.uint16)
    images = {
        "rgb.png": _solid("RGB", (255, 0, 0)),
        "rgba.png": _solid("RGBA", (0, 255, 0, 255)),
        "la.png": _solid("LA", (90, 255)),
        "l.jpg": _solid("L", 128, (300, 200)),
        "p.gif": _solid("RGB", (0, 0, 255)).convert("P"),
        "i16.png": Image.fromarray(grey16),
        "cmyk.jpg": _solid("CMYK", (0, 0, 0, 0)),
        "rgb.webp": _solid("RGB", (9, 9, 9)),
        "rgb.tiff": _solid("RGB", (1, 1, 1), (33, 65)),
        "UPPER.PNG": _solid("RGB", (2, 2, 2)),
    }
    for name, image in images.items():
        _save(image, root / name)
    (root / "notes.txt").write_text("not an image")
    return images


def test_folder_of_every_mode_loads_as_uint8_squares(tmp_path, cache_dir):
    _every_mode_folder(tmp_path / "mixed")
    loaded = load_image_folder(tmp_path / "mixed", size=32, cache_dir=cache_dir)
    assert loaded.images.dtype == np.uint8 and loaded.images.shape == (10, 32, 32, 3)
    assert loaded.labels.dtype == np.int64 and (loaded.labels == -1).all()
    assert loaded.class_names == [] and loaded.name == "mixed"


def test_folder_files_are_in_sorted_path_order(tmp_path, cache_dir):
    for i, name in enumerate(["b.png", "a.png", "c/z.png", "c/d/y.png"]):
        _save(_solid("RGB", (i, 0, 0)), tmp_path / "f" / name)
    loaded = load_image_folder(tmp_path / "f", cache_dir=cache_dir)
    assert loaded.images[:, 0, 0, 0].tolist() == [1, 0, 3, 2]  # a, b, c/d/y, c/z


def test_sub_folders_are_classes_in_sorted_order(tmp_path, cache_dir):
    for name in ["dogs/1.png", "cats/1.png", "cats/deep/2.png", "loose.png"]:
        _save(_solid("RGB", (0, 0, 0)), tmp_path / "f" / name)
    loaded = load_image_folder(tmp_path / "f", cache_dir=cache_dir)
    assert loaded.class_names == ["cats", "dogs"]
    assert loaded.labels.tolist() == [0, 0, 1, -1]  # cats/1, cats/deep/2, dogs/1, loose


@pytest.mark.parametrize("pool_min_files", [0, 10**9], ids=["worker_pool", "in_process"])
def test_corrupt_image_is_skipped_with_a_warning_naming_it(tmp_path, cache_dir, monkeypatch,
                                                          pool_min_files):
    monkeypatch.setattr(data, "POOL_MIN_FILES", pool_min_files)
    _save(_solid("RGB", (5, 5, 5)), tmp_path / "f" / "a_good.png")
    _save(_solid("RGB", (6, 6, 6)), tmp_path / "f" / "c_good.png")
    (tmp_path / "f" / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.warns(UserWarning, match="b_broken.png"):
        loaded = load_image_folder(tmp_path / "f", cache_dir=cache_dir)
    assert loaded.images[:, 0, 0, 0].tolist() == [5, 6]


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_bad_folder_raises_one_line_user_error_naming_it(tmp_path, cache_dir, kind):
    path = tmp_path / f"the_{kind}"
    if kind == "file":
        path.write_text("x")
    elif kind == "empty":
        path.mkdir()
        (path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError) as raised:
        load_image_folder(path, cache_dir=cache_dir)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_progress_is_reported_on_stderr(tmp_path, cache_dir, capsys, monkeypatch):
    monkeypatch.setattr(data, "PROGRESS_EVERY_S", 0.0)
    for i in range(3):
        _save(_solid("RGB", (i, i, i)), tmp_path / "f" / f"{i}.png")
    load_image_folder(tmp_path / "f", cache_dir=cache_dir)
    assert "3/3 images" in capsys.readouterr().err


# ---------------------------------------------------------------- cache


def _three_image_folder(root):
    for i in range(3):
        _save(_solid("RGB", (i * 50, 0, 0)), root / "cls" / f"{i}.png")
    return root


def _no_decoding(*args, **kwargs):
    raise AssertionError("decoded although the cache is valid")


def test_second_load_comes_from_cache_without_decoding(tmp_path, cache_dir, monkeypatch):
    folder = _three_image_folder(tmp_path / "f")
    first = load_image_folder(folder, cache_dir=cache_dir)
    monkeypatch.setattr(data, "_decode_files", _no_decoding)
    second = load_image_folder(folder, cache_dir=cache_dir)
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert second.class_names == first.class_names == ["cls"] and second.labels.dtype == np.int64


def test_cache_dir_defaults_to_flowvj_cache_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWVJ_CACHE", str(tmp_path / "env_cache"))
    load_image_folder(_three_image_folder(tmp_path / "f"))
    assert len(list((tmp_path / "env_cache").glob("*.npz"))) == 1


def test_touching_a_file_invalidates_the_cache(tmp_path, cache_dir):
    folder = _three_image_folder(tmp_path / "f")
    load_image_folder(folder, cache_dir=cache_dir)
    _save(_solid("RGB", (7, 7, 7)), folder / "cls" / "1.png")
    stat = (folder / "cls" / "1.png").stat()
    os.utime(folder / "cls" / "1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_image_folder(folder, cache_dir=cache_dir).images[1, 0, 0, 0] == 7


def test_adding_a_file_invalidates_the_cache(tmp_path, cache_dir):
    folder = _three_image_folder(tmp_path / "f")
    load_image_folder(folder, cache_dir=cache_dir)
    _save(_solid("RGB", (9, 9, 9)), folder / "cls" / "3.png")
    assert len(load_image_folder(folder, cache_dir=cache_dir)) == 4


def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, cache_dir):
    folder = _three_image_folder(tmp_path / "f")
    first = load_image_folder(folder, cache_dir=cache_dir)
    [cache_file] = cache_dir.glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:500])
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = load_image_folder(folder, cache_dir=cache_dir)
    assert np.array_equal(rebuilt.images, first.images)
    with np.load(cache_file) as cached:
        assert cached["images"].shape == (3, 32, 32, 3)


# ---------------------------------------------------------------- CIFAR-10 archive


def _pattern(batch, index):
    """A 32x32 image whose pixel (y, x) is (R, G, B) = (batch*10 + index, y, x)."""
    y, x = np.mgrid[0:32, 0:32]
    return np.stack([np.full((32, 32), batch * 10 + index), y, x], axis=-1).astype(np.uint8)


def _make_cifar_archive(path, images_per_batch=3, members=None):
    """A tar.gz laid out like cifar-10-python.tar.gz, with pickles shaped like the official ones."""
    contents = {"batches.meta": {b"label_names": [b"plane", b"car", b"bird"], b"num_vis": 3072}}
    for batch, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        hwc = np.stack([_pattern(batch, i) for i in range(images_per_batch)])
        contents[name] = {
            b"batch_label": name.encode(),
            b"data": hwc.transpose(0, 3, 1, 2).reshape(images_per_batch, 3072),  # R plane, G, B
            b"labels": [(batch + i) % 3 for i in range(images_per_batch)],
            b"filenames": [f"{name}_{i}.png".encode() for i in range(images_per_batch)],
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in members or contents:
            payload = pickle.dumps(contents[name], protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_archive_train_split_has_channel_major_pixels_decoded_to_hwc(tmp_path):
    train = load_cifar_archive(_make_cifar_archive(tmp_path / "c.tar.gz"), "train")
    assert train.images.shape == (15, 32, 32, 3) and train.images.dtype == np.uint8
    assert np.array_equal(train.images[4], _pattern(1, 1))  # batch 2, second image
    assert train.labels.tolist() == [(b + i) % 3 for b in range(5) for i in range(3)]
    assert train.class_names == ["plane", "car", "bird"] and train.name == "cifar10/train"


def test_archive_test_split_is_the_test_batch(tmp_path):
    test = load_cifar_archive(_make_cifar_archive(tmp_path / "c.tar.gz"), "test")
    assert np.array_equal(test.images, np.stack([_pattern(5, i) for i in range(3)]))
    assert test.labels.tolist() == [2, 0, 1] and test.labels.dtype == np.int64


def test_archive_images_are_resized_to_the_requested_size(tmp_path):
    test = load_dataset(_make_cifar_archive(tmp_path / "c.tgz"), split="test", size=16)
    assert test.images.shape == (3, 16, 16, 3)
    assert (test.images[1, ..., 0] == 51).all()  # a constant plane stays constant


def test_non_archive_file_raises_user_error_naming_it(tmp_path):
    path = tmp_path / "fake.tar.gz"
    path.write_text("hello")
    with pytest.raises(UserError, match="fake.tar.gz"):
        load_cifar_archive(path, "train")


def test_archive_missing_batches_raises_user_error(tmp_path):
    path = _make_cifar_archive(tmp_path / "part.tar.gz", members=["batches.meta", "test_batch"])
    with pytest.raises(UserError, match="data_batch_1"):
        load_cifar_archive(path, "train")


def test_archive_pickle_cannot_run_code(tmp_path):
    payload = pickle.dumps(os.system)  # any global but numpy's array rebuilders is refused
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ["batches.meta", "test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(UserError, match="os.system|posix.system"):
        load_cifar_archive(path, "test")


# ---------------------------------------------------------------- download and dispatch


def test_download_verifies_md5_and_writes_the_archive(tmp_path, monkeypatch):
    source = _make_cifar_archive(tmp_path / "src.tar.gz")
    monkeypatch.setattr(data, "CIFAR10_URL", source.as_uri())
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(source.read_bytes()).hexdigest())
    dest = data.download_cifar10(tmp_path / "dl")
    assert dest.read_bytes() == source.read_bytes()


def test_download_is_skipped_when_the_verified_file_exists(tmp_path, monkeypatch):
    existing = _make_cifar_archive(tmp_path / "dl" / "cifar-10-python.tar.gz")
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(existing.read_bytes()).hexdigest())
    monkeypatch.setattr(data.urllib.request, "urlopen", _no_decoding)
    assert data.download_cifar10(tmp_path / "dl") == existing


def test_download_with_wrong_md5_raises_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_URL", _make_cifar_archive(tmp_path / "src.tar.gz").as_uri())
    with pytest.raises(UserError, match="md5"):
        data.download_cifar10(tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_dataset_folder_with_train_and_test_uses_the_split(tmp_path, cache_dir):
    _save(_solid("RGB", (1, 1, 1)), tmp_path / "ds" / "train" / "a" / "x.png")
    _save(_solid("RGB", (2, 2, 2)), tmp_path / "ds" / "test" / "a" / "x.png")
    test = load_dataset(tmp_path / "ds", split="test", cache_dir=cache_dir)
    assert test.images[0, 0, 0, 0] == 2 and test.name == "ds/test"


def test_dataset_plain_folder_is_loaded_itself(tmp_path, cache_dir):
    _save(_solid("RGB", (3, 3, 3)), tmp_path / "photos" / "x.jpg")
    assert load_dataset(tmp_path / "photos", size=8, cache_dir=cache_dir).images.shape == (1, 8, 8, 3)


@pytest.mark.parametrize("spec", ["cifar10", "no/such/path", "notes.txt"])
def test_dataset_spec_not_understood_raises_user_error_naming_it(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=re.escape(spec)):
        load_dataset(spec)


# ---------------------------------------------------------------- real data (../shared)


def _shared_cifar10():
    assert SHARED_CIFAR10.is_dir(), f"shared CIFAR-10 PNGs missing at {SHARED_CIFAR10}"
    return SHARED_CIFAR10


def _provenance_test_stats():
    text = (_shared_cifar10() / "PROVENANCE.md").read_text()
    match = re.search(r"test\s+mean \(([^)]*)\), std \(([^)]*)\)", text)
    assert match, "PROVENANCE.md no longer states the test mean and std"
    return [np.array([float(v) for v in group.split(",")]) for group in match.groups()]


def test_real_cifar10_class_folder_loads_1000_exact_images(cache_dir):
    first_class = sorted(p for p in (_shared_cifar10() / "test").iterdir() if p.is_dir())[0]
    loaded = load_image_folder(first_class, size=32, cache_dir=cache_dir)
    assert loaded.images.shape == (1000, 32, 32, 3)
    first_file = sorted(first_class.glob("*.png"))[0]
    with Image.open(first_file) as direct:
        assert np.array_equal(loaded.images[0], np.asarray(direct.convert("RGB")))


@pytest.mark.heavy
def test_real_cifar10_test_split_matches_published_mean_and_std(cache_dir):
    test = load_dataset(_shared_cifar10(), split="test", cache_dir=cache_dir)
    assert test.images.shape == (10000, 32, 32, 3) and len(test.class_names) == 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    pixels = test.images.reshape(-1, 3) / 255.0
    mean, std = _provenance_test_stats()
    assert np.abs(pixels.mean(axis=0) - mean).max() < 1e-3
    assert np.abs(pixels.std(axis=0) - std).max() < 1e-3


def _signal_mask(pid, field):
    """The /proc/PID/status bitmask `field` (SigCgt: caught, SigIgn: ignored) as an int."""
    return int(re.search(rf"{field}:\s*([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text())[1], 16)


def test_decode_workers_die_on_sigterm_and_leave_ctrl_c_to_the_parent(tmp_path):
    # forked under the CLI, a worker inherited its raising SIGTERM handler; one whose raise was
    # lost waited for ever while the pool was terminated, and `flowvj train` hung at exit
    import multiprocessing

    from flowvj.cli import _raise_stopped

    for i in range(data.POOL_MIN_FILES):
        _save(_solid("RGB", (i % 256, 0, 0), (4, 4)), tmp_path / f"{i:04d}.png")
    before = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        results = data._decode_files(sorted(tmp_path.glob("*.png")), 4)
        assert next(results)[1] is None
        workers = multiprocessing.active_children()
        assert len(workers) == data.DECODE_WORKERS
        for worker in workers:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                assert not _signal_mask(worker.pid, "SigCgt") >> (sig - 1) & 1
            assert _signal_mask(worker.pid, "SigIgn") >> (signal.SIGINT - 1) & 1
        assert sum(1 for _ in results) == data.POOL_MIN_FILES - 1
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert not multiprocessing.active_children()
