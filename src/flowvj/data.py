"""Training images: any folder of pictures, or the official CIFAR-10 python archive, as uint8 arrays.

Every source ends as an `ImageSet` of square RGB uint8 images (N, size, size, 3). A single file
goes through `load_image`, so a folder of holiday photos and CIFAR-10 at another size are resized
the same way. Decoding a large folder is slow, so its result is cached as one .npz keyed by the
folder's listing: the second load is one `np.load`.
"""

import hashlib
import http.client
import importlib
import json
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import tarfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .atomic import atomic_path
from .errors import UserError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "test")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CACHE_FORMAT = 1  # bump when decoding changes, so old caches are not reused
DECODE_WORKERS = 2
POOL_MIN_FILES = 512  # below this, starting worker processes costs more than it saves
POOL_CHUNK_FILES = 64
PROGRESS_EVERY_S = 5.0
# Everything Pillow raises for a file that is not a readable image (plugins are not uniform).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
                  Image.DecompressionBombError)


@dataclass
class ImageSet:
    """Images with their class labels; the record handed from data loading to training."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,); index into class_names, -1 for an image with no class folder
    class_names: list[str]
    name: str  # e.g. "cifar10/train" or the folder's name; stored in checkpoints

    def __len__(self):
        return len(self.images)


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _to_rgb(img):
    """Any Pillow mode as 8-bit RGB; transparency is composited over black.

    16- and 32-bit greyscale ('I;16*', 'I') is read as 0..65535 and divided by 257, so white stays
    white; Pillow's own convert('L') would clip everything above 255 to white.
    """
    if img.mode.startswith("I"):
        values = np.asarray(img).astype(np.float64)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if not has_alpha:
        return img.convert("RGB")
    rgba = np.asarray(img.convert("RGBA")).astype(np.uint16)
    rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255  # over black = premultiply, rounded
    return Image.fromarray(rgb.astype(np.uint8))


def _wh(size):
    """An image size as (width, height): an int is a square side, a pair is (width, height)."""
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def _size_name(size):
    width, height = _wh(size)
    return f"{width}x{height}"


def fit_square(img, size):
    """Aspect-fill: center-crop to the aspect of `size` (an int side, or (width, height)), then
    resize to it.

    Cropping first matters: resize(box=...) would let the filter reach outside the box and bleed
    the cropped-off edges in. The crop is in whole pixels, so an image whose shorter side is
    already `size` keeps its exact pixel values (CIFAR-10 stays bit-identical).
    """
    out_w, out_h = _wh(size)
    width, height = img.size
    scale = max(out_w / width, out_h / height)  # cover the output, crop the rest
    crop_w, crop_h = min(width, round(out_w / scale)), min(height, round(out_h / scale))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    if (width, height) != (crop_w, crop_h):
        img = img.crop((left, top, left + crop_w, top + crop_h))
    if (crop_w, crop_h) == (out_w, out_h):
        return img
    return img.resize((out_w, out_h), Image.Resampling.LANCZOS, reducing_gap=3.0)


def load_image(path, size):
    """Decode one image file to a uint8 (height, width, 3) RGB array, aspect-filled (scaled to
    cover, centre-cropped) to `size`: an int side for a square, or (width, height).

    path: any file Pillow reads (png, jpg, bmp, gif, webp, tiff, ...); GIFs give their first frame;
        EXIF rotation is applied so phone photos stand upright.
    size: output side in px, or (width, height).
    Raises UserError naming the file if it cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", _wh(size))  # let libjpeg shrink big photos by 2-8x for free
            img = ImageOps.exif_transpose(img)
            img.load()
            rgb = _to_rgb(img)
    except _DECODE_ERRORS as error:
        raise UserError(f"cannot decode image {path}: {_one_line(error)}; "
                        f"expected a readable image file ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return np.asarray(fit_square(rgb, size), dtype=np.uint8)


def _decode_one(job):
    """Worker: (path, size) -> (image or None, error message or None); errors travel back as text
    so the parent process can warn (a warning raised in a worker would be lost)."""
    path, size = job
    try:
        return load_image(path, size), None
    except UserError as error:
        return None, str(error)


def _init_decode_worker():
    """A decode worker dies at once on SIGTERM or SIGHUP and leaves Ctrl-C to its parent.

    Why: forked, it inherited the CLI's handlers, which raise cli.Stopped in the main thread. A
    raise that lands where Python only reports it (a finalizer run by the garbage collector) is
    lost, and that worker then waited for ever on the task queue the parent holds locked while it
    terminates the pool: `flowvj train` hung after its images were decoded (seen once in a
    `make test`, 2026-12-04; the worker died at a second SIGTERM). The default action cannot be
    lost. Ignoring SIGINT keeps a Ctrl-C to one line: the parent stops, terminating the pool.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_files(paths, size):
    """Yield `_decode_one` results in input order, on DECODE_WORKERS processes for big folders."""
    jobs = [(str(path), size) for path in paths]
    if len(jobs) < POOL_MIN_FILES:
        yield from map(_decode_one, jobs)
        return
    with multiprocessing.Pool(DECODE_WORKERS, initializer=_init_decode_worker) as pool:
        yield from pool.imap(_decode_one, jobs, chunksize=POOL_CHUNK_FILES)


def list_image_files(folder):
    """Sorted [(relative posix path, size in bytes, mtime_ns)] of the image files under `folder`.

    Hidden files and folders (names starting with '.', e.g. macOS '._x.png') are left out.
    """
    found = []  # plain strings and os.stat, not Path objects: 3x faster on 50,000 files
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_root = os.path.relpath(root, folder).replace(os.sep, "/")
        for file_name in files:
            extension = os.path.splitext(file_name)[1].lower()
            if file_name.startswith(".") or extension not in IMAGE_EXTENSIONS:
                continue
            stat = os.stat(os.path.join(root, file_name))
            rel = file_name if rel_root == "." else f"{rel_root}/{file_name}"
            found.append((rel, stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def default_cache_dir(cache_dir=None):
    """`cache_dir` if given, else $FLOWVJ_CACHE, else $XDG_CACHE_HOME/flowvj (~/.cache/flowvj)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("FLOWVJ_CACHE"):
        return Path(os.environ["FLOWVJ_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flowvj"


def _dataset_name(folder):
    """'cifar10/train' rather than a bare 'train', which says nothing in a checkpoint."""
    if folder.name in ("train", "test", "val", "valid", "validation") and folder.parent.name:
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def _read_cache(cache_file, size):
    """Cached (images, labels, class_names, skipped) or None if absent or unusable."""
    try:
        # Opened by hand: np.load(path) leaks the file handle when the zip is damaged.
        with open(cache_file, "rb") as f, np.load(f, allow_pickle=False) as cached:
            images, labels = cached["images"], cached["labels"]
            class_names, skipped = cached["class_names"].tolist(), cached["skipped"].tolist()
    except FileNotFoundError:
        return None
    except Exception as error:  # any damage (truncated zip, missing key) just means: rebuild
        warnings.warn(f"ignoring unreadable cache {cache_file} ({_one_line(error)}); rebuilding")
        return None
    if images.dtype != np.uint8 or images.shape[1:] != (_wh(size)[1], _wh(size)[0], 3) or len(labels) != len(images):
        return None
    return images, labels.astype(np.int64), class_names, skipped


def _write_cache(cache_file, images, labels, class_names, skipped):
    try:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
            np.savez(f, images=images, labels=labels, class_names=np.array(class_names, dtype=str),
                     skipped=np.array(skipped, dtype=str))
    except OSError as error:  # a read-only cache costs speed next time, not this run
        warnings.warn(f"could not write cache {cache_file}: {_one_line(error)}")


def _decode_folder(folder, listing, size, name):
    """Decode every listed file; undecodable ones are warned about and left out."""
    rel_paths = [rel for rel, _, _ in listing]
    class_names = sorted({rel.split("/")[0] for rel in rel_paths if "/" in rel})
    class_index = {class_name: i for i, class_name in enumerate(class_names)}
    images = np.empty((len(rel_paths), _wh(size)[1], _wh(size)[0], 3), dtype=np.uint8)
    labels = np.array([class_index[r.split("/")[0]] if "/" in r else -1 for r in rel_paths], np.int64)
    decoded, skipped = np.zeros(len(rel_paths), dtype=bool), []
    start_s = last_report_s = time.monotonic()
    results = _decode_files([folder / rel for rel in rel_paths], size)
    for i, (image, error) in enumerate(results):
        if image is None:
            warnings.warn(f"skipped: {error}")
            skipped.append(rel_paths[i])
        else:
            images[i], decoded[i] = image, True
        if time.monotonic() - last_report_s >= PROGRESS_EVERY_S:
            last_report_s = time.monotonic()
            rate = (i + 1) / max(last_report_s - start_s, 1e-9)
            print(f"decoding {name}: {i + 1}/{len(rel_paths)} images, {rate:.0f}/s, "
                  f"ETA {(len(rel_paths) - i - 1) / rate:.0f} s", file=sys.stderr)
    return images[decoded], labels[decoded], class_names, skipped


def load_image_folder(folder, size=32, cache_dir=None):
    """Every image under `folder` as an ImageSet; sub-folder names are the classes.

    folder: images directly inside (label -1) and/or in class sub-folders (label = index of the
        first path component in the sorted class names); searched recursively, sorted by path.
    size: output side in px, or (width, height) (aspect-filled: scaled to cover, center crop).
    cache_dir: where the decoded .npz goes (see default_cache_dir); the key covers each file's
        path, size and mtime, so editing, adding or removing an image rebuilds it.
    """
    given, folder = folder, Path(folder).expanduser().resolve()
    if not folder.exists():
        raise UserError(f"image folder {given} does not exist; expected a folder of images")
    if not folder.is_dir():
        raise UserError(f"{given} is a file, not a folder; expected a folder of images")
    listing = list_image_files(folder)
    if not listing:
        raise UserError(f"no images found in {given}; expected {', '.join(sorted(IMAGE_EXTENSIONS))} "
                        "files in it or in class sub-folders")
    name = _dataset_name(folder)
    key_text = json.dumps([CACHE_FORMAT, str(folder), size if isinstance(size, int) else _wh(size), listing])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
    cache_file = default_cache_dir(cache_dir) / f"{folder.name}-{size if isinstance(size, int) else _size_name(size)}px-{key}.npz"
    cached = _read_cache(cache_file, size)
    if cached is None:
        cached = _decode_folder(folder, listing, size, name)
        if len(cached[0]) == 0:
            raise UserError(f"none of the {len(listing)} image files in {given} could be decoded; "
                            "expected readable images")
        _write_cache(cache_file, *cached)
    else:
        for rel in cached[3]:
            warnings.warn(f"skipped: {folder / rel} could not be decoded (result cached)")
    images, labels, class_names, _ = cached
    return ImageSet(images=images, labels=labels, class_names=class_names, name=name)


# A pickle can run arbitrary code on load; CIFAR batches need only these harmless globals.
_PICKLE_GLOBALS = {
    ("_codecs", "encode"): "_codecs",
    ("numpy", "ndarray"): "numpy",
    ("numpy", "dtype"): "numpy",
    **{(f"numpy.{core}.multiarray", name): "numpy._core.multiarray"
       for core in ("core", "_core") for name in ("_reconstruct", "scalar")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): "numpy._core.numeric" for core in ("core", "_core")},
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array rebuilding."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"pickle wants {module}.{name}, which a CIFAR batch never needs")
        return getattr(importlib.import_module(_PICKLE_GLOBALS[module, name]), name)


def _read_cifar_members(path, wanted):
    """{member base name: unpickled dict} for the `wanted` base names, in one pass over the tar."""
    found = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in wanted:
                found[base] = _CifarUnpickler(tar.extractfile(member), encoding="bytes").load()
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise KeyError(f"missing members {', '.join(missing)}")
    return found


def load_cifar_archive(path, split, size=32):
    """The official CIFAR-10 python archive (cifar-10-python.tar.gz) as an ImageSet.

    split: 'train' (data_batch_1..5, 50,000 images) or 'test' (test_batch, 10,000).
    size: output side in px; 32 keeps the original pixels, anything else resizes like load_image.
    Each batch row is 3072 bytes: the 32x32 red plane, then green, then blue (channel-major).
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} for {path}; expected one of {', '.join(SPLITS)}")
    batches = CIFAR10_BATCHES[split]
    try:
        members = _read_cifar_members(path, batches + ["batches.meta"])
        class_names = [n.decode() for n in members["batches.meta"][b"label_names"]]
        rows = np.concatenate([np.asarray(members[b][b"data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(members[b][b"labels"], dtype=np.int64) for b in batches])
        images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        if len(labels) != len(images) or labels.min() < 0 or labels.max() >= len(class_names):
            raise ValueError("labels do not match the images or the class names")
    except (tarfile.TarError, OSError, EOFError, KeyError, TypeError, ValueError, AttributeError,
            pickle.UnpicklingError) as error:
        raise UserError(f"{path} is not a valid CIFAR-10 python archive ({_one_line(error)}); expected "
                        f"cifar-10-python.tar.gz from {CIFAR10_URL}")
    if size != 32:
        images = np.stack([np.asarray(fit_square(Image.fromarray(im), size)) for im in images])
    return ImageSet(images=np.ascontiguousarray(images), labels=labels, class_names=class_names,
                    name=f"cifar10/{split}")


def _md5(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_cifar10(dest_dir):
    """Download cifar-10-python.tar.gz (163 MB) into dest_dir unless a verified copy is there."""
    dest = Path(dest_dir).expanduser() / "cifar-10-python.tar.gz"
    if dest.is_file() and _md5(dest) == CIFAR10_MD5:
        return dest
    print(f"downloading {CIFAR10_URL} -> {dest}", file=sys.stderr)
    try:
        with atomic_path(dest) as tmp, urllib.request.urlopen(CIFAR10_URL, timeout=60) as response:
            with open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            if _md5(tmp) != CIFAR10_MD5:
                raise UserError(f"download of {CIFAR10_URL} is corrupt (md5 is not {CIFAR10_MD5}); "
                                "expected the official archive, try again")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise UserError(f"could not download {CIFAR10_URL} to {dest}: {_one_line(error)}; "
                        "expected network access, or pass the path of a downloaded archive")
    return dest


def load_dataset(spec, split="train", size=32, cache_dir=None, download=False):
    """Load what the user named: an image folder, a CIFAR-10 archive, or 'cifar10' (download).

    spec: a folder (with train/ and test/ sub-folders `spec/split` is used, else the folder
        itself), a .tar.gz/.tgz CIFAR-10 python archive, or 'cifar10' with download=True.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not isinstance(size, int) or size < 1:
        raise UserError(f"image size {size!r} is not a positive whole number of pixels")
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "train").is_dir() and (path / "test").is_dir():
            path = path / split
        return load_image_folder(path, size=size, cache_dir=cache_dir)
    if path.is_file() and path.name.lower().endswith((".tar.gz", ".tgz")):
        return load_cifar_archive(path, split, size=size)
    if str(spec) == "cifar10" and download:
        return load_cifar_archive(download_cifar10(default_cache_dir(cache_dir)), split, size=size)
    why = "needs download=True (--download) to fetch it" if str(spec) == "cifar10" else (
        "is not a folder or a .tar.gz/.tgz file" if path.exists() else "does not exist")
    raise UserError(f"dataset {spec!r} {why}; expected an image folder, a cifar-10-python.tar.gz "
                    "archive, or 'cifar10' with --download")


def has_test_split(spec):
    """Whether load_dataset(spec, 'test') gives held-out images rather than the training ones."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return (path / "train").is_dir() and (path / "test").is_dir()
    return str(spec) == "cifar10" or path.name.lower().endswith((".tar.gz", ".tgz"))
