"""MNIST, Fashion-MNIST and CIFAR-10 read from their official files, downloaded with torchvision when missing.

Files are laid out as torchvision lays them out, so a folder that torchvision already filled works as is:
  <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
  <root>/FashionMNIST/raw/... (the same four names)
  <root>/cifar-10-batches-py/{data_batch_1..5,test_batch}   (or cifar-10-batches-bin/*.bin)
The CIFAR python batches are pickles; they are read with an unpickler that only lets numpy arrays be rebuilt,
because a pickle from a folder the user points us at could otherwise run any code.
When the files are missing and cannot be downloaded, `DatasetUnavailable` says what was looked for, where,
and how to get it.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import socket
import struct
import tarfile
import zlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.datasets import DatasetUnavailable, dataset_info

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train_x uint8 [N,C,H,W], train_y, test_x, test_y

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_DOWNLOAD_ERRORS = (OSError, RuntimeError, EOFError, tarfile.TarError)  # URLError and timeouts are OSErrors
_SOCKET_TIMEOUT_S = 30.0  # torchvision opens URLs without a timeout; a silently dropped connection would hang


def default_data_dir() -> Path:
    from engine.paths import data_dir

    return data_dir()


def load_official(name: str, *, data_dir: str | Path | None = None, download: bool = True) -> Arrays:
    """(train_x, train_y, test_x, test_y) of a torchvision dataset as uint8 [N, C, H, W] images and int64
    labels, from the official train and test files under data_dir (default TRAINLENS_HOME/data)."""
    info = dataset_info(name)
    if info.source != "torchvision":
        raise ValueError(f"{name!r} is not a torchvision dataset")
    from engine.paths import check_data_dir

    root = check_data_dir(data_dir) if data_dir else default_data_dir()  # never a folder outside the data roots
    fetch = _fetch_idx_dataset if name in _IDX_FOLDERS else _fetch_cifar10
    if not _present(name, root):
        fetch(name, root, download)  # raises DatasetUnavailable when that does not work out
    return _read_cached(name, str(root))


def _present(name: str, root: Path) -> bool:
    if name in _IDX_FOLDERS:
        raw = root / _IDX_FOLDERS[name] / "raw"
        return all(_find_idx(raw, stem) is not None for stem in _IDX_FILES)
    return _cifar_folder(root) is not None


@lru_cache(maxsize=4)
def _read_cached(name: str, root: str) -> Arrays:
    # cached per process (the app and the workers load the same data again and again); the callers copy
    # when they convert to float, so nobody can modify the cached arrays
    if name in _IDX_FOLDERS:
        return _read_idx_dataset(Path(root) / _IDX_FOLDERS[name] / "raw")
    folder, reader, suffix = _cifar_folder(Path(root))  # type: ignore[misc]
    parts = [reader(folder / f"{stem}{suffix}") for stem in _CIFAR_TRAIN]
    test_x, test_y = reader(folder / f"{_CIFAR_TEST}{suffix}")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test_x, test_y


# --- MNIST / Fashion-MNIST: idx-ubyte files -------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An idx-ubyte file (gzipped when the name ends in .gz) as a uint8 array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:  # a half-downloaded .gz
        raise DatasetUnavailable(f"{path} cannot be read ({error}); delete it so that it can be fetched again.") \
            from error
    # header: two zero bytes, a type code (0x08 = unsigned byte), the number of dims, then each dim (big-endian)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetUnavailable(f"{path} is not an unsigned-byte idx file; delete it so that it can be fetched again.")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    payload = memoryview(data)[4 + 4 * ndim:]
    if len(payload) != int(np.prod(dims)):
        raise DatasetUnavailable(
            f"{path} is truncated or corrupt (header says {dims}, found {len(payload)} bytes); delete it.")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _find_idx(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _fetch_idx_dataset(name: str, root: Path, download: bool) -> None:
    import torchvision.datasets as tvd

    dataset_class = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
    raw = root / _IDX_FOLDERS[name] / "raw"
    where = " or ".join(dataset_class.mirrors)
    if not download:
        raise _unavailable(name, raw, _IDX_FILES, where, None)
    for filename, md5 in dataset_class.resources:
        if _find_idx(raw, filename.removesuffix(".gz")) is not None:
            continue
        error = _download_first([mirror + filename for mirror in dataset_class.mirrors], raw, filename, md5)
        if error is not None:
            raise _unavailable(name, raw, _IDX_FILES, where, error)


def _read_idx_dataset(raw: Path) -> Arrays:
    train_x, train_y, test_x, test_y = (read_idx(_find_idx(raw, stem)) for stem in _IDX_FILES)  # type: ignore[arg-type]
    for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetUnavailable(
                f"{raw}: the {split} images {images.shape} and labels {labels.shape} do not match.")
    return train_x[:, None].copy(), train_y.astype(np.int64), test_x[:, None].copy(), test_y.astype(np.int64)


# --- CIFAR-10: python pickles (or the binary version) ----------------------------------------------------

def _numpy_globals() -> dict[tuple[str, str], Any]:
    multiarray = importlib.import_module("numpy._core.multiarray")
    numeric = importlib.import_module("numpy._core.numeric")
    import codecs

    return {
        # the CIFAR files were pickled by Python 2 with numpy 1 (numpy.core); numpy 2 calls it numpy._core
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles written by Python 3 store bytes this way
    }


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, refuses every other global (and with it any code)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _numpy_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}': dataset files may only hold numpy arrays")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch file as (uint8 [N, 3, 32, 32], int64 [N])."""
    with open(path, "rb") as f:
        try:
            batch = NumpyOnlyUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
            raise DatasetUnavailable(f"{path} is not a CIFAR-10 python batch ({error}).") from error
    if not isinstance(batch, dict):
        raise DatasetUnavailable(f"{path} is not a CIFAR-10 python batch (no dictionary inside).")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetUnavailable(f"{path} has no 'data'/'labels' entries; is it a CIFAR-10 python batch?")
    images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels):
        raise DatasetUnavailable(f"{path}: {len(images)} images but {len(labels)} labels.")
    return images, labels


def read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR binary batch (records of 1 label byte + 3,072 pixel bytes) as (uint8 [N,3,32,32], int64 [N])."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 3073:
        raise DatasetUnavailable(f"{path} is not a CIFAR-10 binary batch (size {raw.size} is not a multiple of 3073).")
    records = raw.reshape(-1, 3073)
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), records[:, 0].astype(np.int64)


def _cifar_folder(root: Path):
    """(folder, batch reader, file suffix) of a complete CIFAR-10 copy under root, python version first; or None."""
    names = (*_CIFAR_TRAIN, _CIFAR_TEST)
    for folder, reader, suffix in ((root / "cifar-10-batches-py", read_cifar_batch, ""),
                                   (root / "cifar-10-batches-bin", read_cifar_binary, ".bin")):
        if all((folder / f"{n}{suffix}").is_file() for n in names):
            return folder, reader, suffix
    return None


def _fetch_cifar10(name: str, root: Path, download: bool) -> None:
    import torchvision.datasets as tvd

    names = (*_CIFAR_TRAIN, _CIFAR_TEST)
    python_dir = root / "cifar-10-batches-py"
    if not download:
        raise _unavailable(name, python_dir, names, tvd.CIFAR10.url, None)
    error = _download_first([tvd.CIFAR10.url], root, tvd.CIFAR10.filename, tvd.CIFAR10.tgz_md5)
    if error is not None or _cifar_folder(root) is None:
        raise _unavailable(name, python_dir, names, tvd.CIFAR10.url, error)


# --- downloading and the "not available" message ---------------------------------------------------------

@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download_first(urls: list[str], folder: Path, filename: str, md5: str | None) -> BaseException | None:
    """Download and extract the archive from the first URL that works; the last error when none does."""
    from torchvision.datasets import utils as tv_utils

    error: BaseException | None = None
    for url in urls:
        try:
            with _socket_timeout(_SOCKET_TIMEOUT_S):
                tv_utils.download_and_extract_archive(url, download_root=str(folder), filename=filename, md5=md5)
            return None
        except _DOWNLOAD_ERRORS as exc:
            error = exc
    return error


def _unavailable(
    name: str, folder: Path, files: tuple[str, ...], url: str, error: BaseException | None
) -> DatasetUnavailable:
    title = dataset_info(name).title
    message = f"{title} is not on this machine: looked for {', '.join(files)} in {folder}. "
    if error is None:
        message += "Downloading was not allowed. "
    else:
        message += (f"Downloading it failed ({type(error).__name__}: {error}); this machine is probably offline "
                    "or cannot reach the server. ")
    if name in _IDX_FOLDERS:
        how = f"download the four .gz files from {url} and put them (gzipped or not) in {folder}"
    else:
        how = f"download {url} and unpack it in {folder.parent} (it holds the folder {folder.name})"
    message += (f"To get it, {how}, or point the data folder at a copy that has them; or pick the built-in "
                "'mnist5k' or 'shapes' dataset, which need no download.")
    return DatasetUnavailable(message)
