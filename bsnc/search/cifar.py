"""CIFAR-10 and CIFAR-100 through torchvision's dataset classes and transforms, with the batch
files read by `safe_pickle.load_restricted` instead of torchvision's `pickle.load` (a planted
batch file would run code). torchvision's checksums are not required, so that a re-packed or
fabricated file in the same format is accepted."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset
from torchvision import transforms
from torchvision.datasets import CIFAR10, CIFAR100

from bsnc.errors import UsageError
from bsnc.search.safe_pickle import RefusedPickle, load_restricted

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CLASSES = {"cifar10": CIFAR10, "cifar100": CIFAR100}
TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}

# what reading a truncated or foreign file can raise
_UNREADABLE = (OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError, IndexError, TypeError, AttributeError)

_NORMALIZE = [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
PLAIN = transforms.Compose(_NORMALIZE)  # uint8 to [-1, 1]
AUGMENT = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *_NORMALIZE])


def _long(target: int) -> torch.Tensor:
    return torch.tensor(target, dtype=torch.long)


def _dataset(kind: str, root: Path, images: np.ndarray, labels: np.ndarray, names: list[str],
             transform: Any) -> CIFAR10:
    """torchvision's class for ``kind`` holding already-read ``[N, 32, 32, 3]`` images."""
    cls = CLASSES[kind]
    dataset = cls.__new__(cls)
    # VisionDataset's constructor only records root and transforms; CIFAR10's would read files
    super(CIFAR10, dataset).__init__(str(root), transform=transform, target_transform=_long)
    dataset.train = True
    dataset.data = images
    dataset.targets = labels.tolist()
    dataset.classes = names
    dataset.class_to_idx = {name: i for i, name in enumerate(names)}
    return dataset


def files(kind: str) -> tuple[str, list[str], list[str], str]:
    """The folder, training files, test files and meta file of ``kind``, as torchvision has them."""
    cls = CLASSES[kind]
    return cls.base_folder, [f for f, _ in cls.train_list], [f for f, _ in cls.test_list], cls.meta["filename"]


def _read(kind: str, path: Path) -> Any:
    try:
        return load_restricted(path)
    except RefusedPickle as exc:
        raise UsageError(f"--data {kind}: {path} is not a {TITLES[kind]} python batch and was refused "
                         f"unread: {exc}") from None
    except _UNREADABLE as exc:
        raise UsageError(f"--data {kind}: {path} is not a {TITLES[kind]} python batch "
                         f"({type(exc).__name__}: {exc}); unpack {CLASSES[kind].filename} again") from None


def read_batches(kind: str, folder: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 32, 32, 3]`` uint8 and labels ``[N]`` from the batch files ``names``."""
    classes = 10 if kind == "cifar10" else 100
    key = "labels" if kind == "cifar10" else "fine_labels"
    images, labels = [], []
    for name in names:
        path = folder / name
        entry = _read(kind, path)
        try:
            targets = np.asarray(entry[key], dtype=np.int64)
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(len(targets), 3, 32, 32)
        except _UNREADABLE as exc:
            raise UsageError(f"--data {kind}: {path} is not a {TITLES[kind]} python batch "
                             f"({type(exc).__name__}: {exc}); unpack {CLASSES[kind].filename} again") from None
        if targets.size and (targets.min() < 0 or targets.max() >= classes):
            raise UsageError(f"--data {kind}: {path} has labels outside 0..{classes - 1}")
        images.append(data.transpose(0, 2, 3, 1))
        labels.append(targets)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def read_names(kind: str, path: Path) -> list[str]:
    meta = _read(kind, path)
    key = CLASSES[kind].meta["key"]
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"--data {kind}: {path} holds no list of class names under {key!r}; "
                         f"unpack {CLASSES[kind].filename} again")
    return names


def splits(kind: str, root: Path, folder: Path, seed: int, augment: bool) -> tuple[Subset, Subset, CIFAR10]:
    """Train and validation (a seeded tenth of the training files validates) and test, as
    torchvision datasets of ``[3, 32, 32]`` images in [-1, 1]; only training is augmented
    (RandomCrop(32, padding=4) and RandomHorizontalFlip)."""
    _, train_files, test_files, meta = files(kind)
    names = read_names(kind, folder / meta)
    train_x, train_y = read_batches(kind, folder, train_files)
    test_x, test_y = read_batches(kind, folder, test_files)
    if len(train_y) < 2 or len(test_y) < 1:
        raise UsageError(f"--data {kind}: {folder} holds {len(train_y)} training and {len(test_y)} test images; "
                         "too few")
    perm = np.random.default_rng([seed % 2**63]).permutation(len(train_y))
    n_val = max(1, len(train_y) // 10)  # 45,000 / 5,000 for the real 50,000
    fit = _dataset(kind, root, train_x, train_y, names, AUGMENT if augment else PLAIN)
    held = _dataset(kind, root, train_x, train_y, names, PLAIN)
    test = _dataset(kind, root, test_x, test_y, names, PLAIN)
    test.train = False
    return Subset(fit, perm[n_val:].tolist()), Subset(held, perm[:n_val].tolist()), test
