"""Where the digits come from: MNIST IDX files, the download, the bundled sample, binarised MNIST.

In order of preference:
1. a directory given as an argument or in ``VAE_DATA_DIR`` holding the four IDX files (``.gz`` or not);
2. ``torchvision.datasets.MNIST`` downloading into the cache directory (when online);
3. the MNIST sample shipped inside this package (``digits/``, offline, no files): 5,000 test digits
   (every other one of the 10,000) and 5,000 training digits (the first) — only when the caller
   asks for it with ``allow_sample=True``.

Every result says which one it is (``DigitImages.source``) so the app can tell the user.
"""

from __future__ import annotations

import functools
import gzip
import io
import lzma
import os
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import torch

from .data import DigitImages, pool_to_14
from .errors import DataError

DATA_DIR_ENV = "VAE_DATA_DIR"
CACHE_DIR_ENV = "VAE_CACHE_DIR"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_cache_dir() -> Path:
    """Where downloads go: $VAE_CACHE_DIR, else the user's cache directory, else the temp directory.

    Never the repository: a read-only checkout (as on some hosts) must work.
    """
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae_explorer"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / "vae_explorer"


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    for folder in (directory, directory / "raw", directory / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the format MNIST ships in), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {dims} ({expected} bytes), "
            f"file has {len(raw) - offset}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _read_idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_stem, label_stem = IDX_FILES[split]
    image_path = _find_idx_file(directory, image_stem)
    label_path = _find_idx_file(directory, label_stem)
    if image_path is None or label_path is None:
        raise DataError(
            f"no MNIST {split} files in {directory}: expected {image_stem}(.gz) and "
            f"{label_stem}(.gz) there, in raw/ or in MNIST/raw/"
        )
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images.reshape(len(images), -1), labels


MNIST_MIRROR_HOST = "ossci-datasets.s3.amazonaws.com"  # torchvision's first MNIST mirror


def network_reachable(host: str = MNIST_MIRROR_HOST, port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to `host` opens within `timeout` seconds, name lookup included.

    Offline, torchvision's download walks every mirror through slow name-lookup failures
    (about 14 s here); this answers in at most `timeout`, so callers can fall back at once.
    """
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


# torchvision downloads in a child process: importing it costs ~1.4 s and ~160 MB that a server
# would otherwise keep for its whole life after a single download.
_TORCHVISION_DOWNLOAD = """
import os, sys
from torchvision.datasets import MNIST
if os.environ.get("VAE_MNIST_MIRROR"):
    MNIST.mirrors = [os.environ["VAE_MNIST_MIRROR"]]
MNIST(sys.argv[1], train=sys.argv[2] == "train", download=True)
"""
MIRROR_ENV = "VAE_MNIST_MIRROR"  # a URL ending in "/" that serves the MNIST .gz files instead
DOWNLOAD_TIMEOUT_S = 180.0


def _download_split(split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """MNIST from the cache directory, downloaded there first by torchvision.datasets.MNIST if missing."""
    root = default_cache_dir()
    raw = root / "MNIST" / "raw"  # torchvision's layout
    try:
        root.mkdir(parents=True, exist_ok=True)
        missing = [stem for stem in IDX_FILES[split] if _find_idx_file(raw, stem) is None]
        if missing:
            mirror = urllib.parse.urlsplit(os.environ.get(MIRROR_ENV) or f"https://{MNIST_MIRROR_HOST}/")
            if not network_reachable(
                mirror.hostname, mirror.port or (443 if mirror.scheme == "https" else 80)
            ):
                raise OSError(f"no network: {mirror.hostname} is unreachable")
            done = subprocess.run(
                [sys.executable, "-c", _TORCHVISION_DOWNLOAD, str(root), split],
                capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S,
            )  # fmt: skip
            if done.returncode != 0:
                last_line = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
                raise OSError(f"torchvision's download failed: {last_line}")
        images, labels = _read_idx_split(raw, split)
    except (OSError, subprocess.TimeoutExpired, DataError) as exc:
        raise DataError(
            f"MNIST is not in {root} and could not be downloaded ({type(exc).__name__}: {exc}). "
            f"Offline? Point --data-dir or ${DATA_DIR_ENV} at a folder with the four MNIST IDX files."
        ) from exc
    return images, labels, root


def _find_binarized_npz(data_dir: Path | None) -> Path:
    candidates = []
    env = os.environ.get("VAE_BINARIZED_DIR")
    if env:
        candidates.append(Path(env))
    if data_dir is not None:
        candidates += [data_dir, data_dir.parent / "binarized_mnist"]
    candidates.append(default_cache_dir())
    for folder in candidates:
        path = folder if folder.suffix == ".npz" else folder / "binarized_mnist.npz"
        if path.is_file():
            return path
    raise DataError(
        "statically binarised MNIST (binarized_mnist.npz with train/valid/test arrays) not found in "
        f"{[str(c) for c in candidates]}; set $VAE_BINARIZED_DIR to its folder"
    )


def _as_digits(
    pixels: np.ndarray, labels: np.ndarray, image_size: int, binarization: str, source: str
) -> DigitImages:
    tensor = torch.from_numpy(np.array(pixels, dtype=np.uint8))  # a private, writable copy
    if image_size == 14:
        tensor = pool_to_14(tensor)
    elif image_size != 28:
        raise DataError(f"image_size must be 28 or 14, got {image_size}")
    return DigitImages(
        tensor, torch.from_numpy(np.asarray(labels, dtype=np.int64)), image_size, binarization, source
    )


FOLDER_ENVS = (DATA_DIR_ENV, "VAE_BINARIZED_DIR", CACHE_DIR_ENV)


def make_folder_variables_absolute(environ=os.environ) -> None:
    """Turn relative $VAE_DATA_DIR, $VAE_BINARIZED_DIR and $VAE_CACHE_DIR into absolute paths, once,
    when vae_core is imported: a process started elsewhere (torchrun's workers, a CLI run in a test's
    tmp_path) inherits the variable, and `../shared/data/mnist` would mean another folder there."""
    for name in FOLDER_ENVS:
        value = environ.get(name)
        if value and not os.path.isabs(os.path.expanduser(value)):
            environ[name] = os.path.abspath(os.path.expanduser(value))


make_folder_variables_absolute()


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The argument, else $VAE_DATA_DIR, else None (meaning: download); absolute, so a later chdir
    or a subprocess in another folder reads the same files."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        return None
    path = Path(os.path.abspath(Path(chosen).expanduser()))
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist")
    return path


# MNIST (LeCun, Cortes & Burges), CC BY-SA 3.0: see digits/NOTICE. Written by scripts/make_bundled_digits.py.
BUNDLED_DIGITS = Path(__file__).resolve().parent / "digits" / "mnist_sample.npz.xz"
BUNDLED_TEST_STRIDE = 2  # test digits 0, 2, ..., 9,998: both of MNIST's test halves (writer groups,
# which score differently: mlp2d's ELBO -143.78 on the first half, -140.45 on the second, -141.63 here)
BUNDLED_TRAIN_COUNT = 5000  # training digits 0 .. 4,999
BUNDLED_SOURCES = {
    "test": "5,000 MNIST test digits shipped with the app",
    "train": "5,000 MNIST training digits shipped with the app",
}


@functools.cache
def _bundled_arrays() -> dict[str, np.ndarray]:
    """The shipped sample's arrays, read once (0.1 s, 8 MB) and never written to."""
    try:
        raw = lzma.decompress(BUNDLED_DIGITS.read_bytes())
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, lzma.LZMAError, ValueError, KeyError) as exc:
        raise DataError(
            f"the MNIST sample shipped with vae_core ({BUNDLED_DIGITS.name}) is unreadable: {exc}"
        ) from exc
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def bundled_test_indices() -> np.ndarray:
    """Each shipped test digit's index in MNIST's 10,000 test images, (5000,)."""
    return _bundled_arrays()["test_index"].astype(np.int64)


def load_sample_digits(
    image_size: int = 28, binarization: str = "dynamic", split: str = "train"
) -> DigitImages:
    """The MNIST sample shipped inside vae_core: 5,000 `split` digits ("test" or "train"), labelled.

    Test digits are held out from every pretrained model's training; the training ones are not,
    so only "test" is ever scored as test performance.
    """
    if split not in BUNDLED_SOURCES:
        raise DataError(f"the shipped sample has 'train' and 'test' digits, not {split!r}")
    arrays = _bundled_arrays()
    pixels, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    return _as_digits(pixels, labels, image_size, binarization, BUNDLED_SOURCES[split])


def load_digits(
    split: str = "test",
    data_dir: str | Path | None = None,
    binarization: str = "dynamic",
    image_size: int = 28,
    allow_download: bool = True,
    allow_sample: bool = False,
) -> DigitImages:
    """Load one MNIST split ("train" = the 60k, "test" = the 10k) on the CPU.

    With ``binarization="binarized"`` the standard statically binarised MNIST is used instead
    (train = its 50k, "valid" = its 10k validation set, test = its 10k; it carries no labels).
    """
    if split not in ("train", "test", "valid"):
        raise DataError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    directory = resolve_data_dir(data_dir)
    if binarization == "binarized":
        path = _find_binarized_npz(directory)
        with np.load(path, allow_pickle=False) as archive:
            bits = archive[split]
        labels = np.full(len(bits), -1, dtype=np.int64)
        return _as_digits(
            bits * 255, labels, image_size, binarization, "statically binarised MNIST (Larochelle & Murray)"
        )
    if split == "valid":
        raise DataError("the 'valid' split exists only for binarized MNIST; use load_train_validation")
    errors = []
    if directory is not None:
        images, labels = _read_idx_split(directory, split)
        # No folder in a source: it is shown to visitors and saved in checkpoints
        return _as_digits(images, labels, image_size, binarization, f"MNIST {split} (IDX files)")
    if allow_download:
        try:
            images, labels, root = _download_split(split)
            source = f"MNIST {split} (downloaded by torchvision)"
            return _as_digits(images, labels, image_size, binarization, source)
        except DataError as exc:
            errors.append(str(exc))
    if allow_sample:
        return load_sample_digits(image_size, binarization, split)
    raise DataError(" ".join(errors) or f"no MNIST source: pass a data directory or set ${DATA_DIR_ENV}")


def load_train_validation(
    data_dir: str | Path | None = None,
    binarization: str = "dynamic",
    image_size: int = 28,
    validation_size: int | None = None,
    allow_sample: bool = False,
    allow_download: bool = True,
    sample_only: bool = False,
) -> tuple[DigitImages, DigitImages]:
    """Training digits and a validation split carved from the end of the training images.

    `validation_size` defaults to 10,000 of MNIST's 60k, or a tenth of the bundled 5k training
    sample (used when `sample_only`, or when `allow_sample` and no MNIST source is reachable).
    Both are MNIST's own order, which mixes the classes, so a tail split is a fair mix of them.
    """
    if binarization == "binarized":
        train = load_digits("train", data_dir, binarization, image_size)
        valid = load_digits("valid", data_dir, binarization, image_size)
        return train, valid.subset(slice(0, validation_size or len(valid)))
    if sample_only:
        digits = load_sample_digits(image_size, binarization)
    else:
        digits = load_digits("train", data_dir, binarization, image_size, allow_download, allow_sample)
    if validation_size is None:
        validation_size = 10_000 if len(digits) > 20_000 else len(digits) // 10
    if not 0 < validation_size < len(digits):
        raise DataError(
            f"validation_size must leave digits on both sides: between 1 and {len(digits) - 1} for "
            f"{len(digits):,} digits, got {validation_size}"
        )
    cut = len(digits) - validation_size
    return digits.subset(slice(0, cut)), digits.subset(slice(cut, None))
