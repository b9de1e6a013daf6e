"""Data sets the user brings: a folder of images (`--data imagefolder --data-dir DIR`), a
function (`--data package.module:function`, or an entry point of group `bsnc.datasets`) that
returns train/validation/test `torch.utils.data.Dataset`s, or the datasets themselves (the
Python API). See docs/data.md."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from bsnc.errors import UsageError, display_path

ENTRY_POINT_GROUP = "bsnc.datasets"
SPLIT_DIRS = ("train", "val", "test")
IMAGE_SPLIT = (0.8, 0.1, 0.1)  # of a folder without train/val/test sub-folders


# --- datasets given as objects ------------------------------------------------------------------


def first_example(name: str, split: str, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``(x, y)`` of ``dataset`` as tensors; UsageError naming the data set when it is
    not a non-empty dataset of (input tensor, label) pairs."""
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise UsageError(f"--data {name}: the {split} split is a {type(dataset).__name__}; expected a "
                         "torch.utils.data.Dataset (with __len__ and __getitem__)")
    if len(dataset) == 0:
        raise UsageError(f"--data {name}: the {split} split is empty")
    item = dataset[0]
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise UsageError(f"--data {name}: the {split} split gives {type(item).__name__}s; expected (input, label) pairs")
    x, y = item
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise UsageError(f"--data {name}: the {split} split's inputs are {type(x).__name__}s; expected tensors "
                         "(e.g. add torchvision.transforms.ToTensor() to its transform)")
    return torch.as_tensor(x), torch.as_tensor(y)


def triple(name: str, value: Any) -> tuple[Dataset, Dataset, Dataset]:
    """``value`` as (train, val, test): a 3-sequence or an object with .train, .val, .test."""
    if all(hasattr(value, k) for k in SPLIT_DIRS):
        value = (value.train, value.val, value.test)
    if not (isinstance(value, Sequence) and len(value) == 3):
        raise UsageError(f"--data {name}: got {type(value).__name__}; expected three datasets "
                         "(train, validation, test)")
    return value[0], value[1], value[2]


# --- package.module:function and entry points ---------------------------------------------------


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def entry_point_names() -> list[str]:
    return sorted(e.name for e in _entry_points())


def find_function(name: str) -> Any | None:
    """The function an entry point or ``package.module:function`` names, or None if ``name`` is
    neither."""
    for entry in _entry_points():
        if entry.name == name:
            try:
                return entry.load()
            except Exception as exc:  # the user's package: report whatever it raised
                raise UsageError(f"--data {name}: entry point {entry.value} failed to load: {exc}") from None
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", name):
        return None
    module_name, _, attr = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--data {name}: cannot import module '{module_name}': {exc} (is it on PYTHONPATH?)") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--data {name}: module '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"--data {name}: '{attr}' is not callable; expected a function returning (train, val, test)")
    return target


def call_function(name: str, function: Any, **available: Any) -> Any:
    """Call the user's data function with the keyword arguments it declares among
    ``data_dir``, ``seed``, ``input_shape``, ``num_classes`` and ``augment``."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in available.items() if takes_all or k in params}
    try:
        return function(**kwargs)
    except UsageError:
        raise
    except Exception as exc:  # the user's code
        raise UsageError(f"--data {name}: the function raised {type(exc).__name__}: {exc}") from None


# --- imagefolder --------------------------------------------------------------------------------


def _image_transforms(channels: int, size: tuple[int, int], augment: bool) -> Any:
    from torchvision import transforms

    steps: list[Any] = [transforms.Grayscale(1) if channels == 1 else transforms.Lambda(_rgb),
                        transforms.Resize(size)]
    if augment:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]
    return transforms.Compose(steps)


def _rgb(image: Any) -> Any:
    return image.convert("RGB")


def _folder(root: Path, transform: Any) -> Any:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(root), transform=transform, loader=load_image)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UsageError(f"--data-dir {root}: not an image folder ({exc}); expected one sub-folder of images "
                         "per class, e.g. DIR/cat/1.jpg, DIR/dog/2.png") from None


def _unreadable(path: str, exc: BaseException) -> UsageError:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        why = "not an image format that Pillow reads"
    else:
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
    return UsageError(f"--data-dir: {display_path(Path(path))}: cannot read it as an image ({why}); "
                      "remove it or replace it")


def load_image(path: str) -> Any:
    """ImageFolder's loader, a damaged image a UsageError naming it (not an OSError that reads
    as a failed write)."""
    from torchvision.datasets.folder import default_loader

    try:
        return default_loader(path)
    except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises for a damaged file
        raise _unreadable(path, exc) from None


def check_images(folders: Sequence[Any]) -> None:
    """Open every image of ``folders`` (its header only: cheap) before any training, so that a
    file that is no image is named now, not at the batch that first draws it."""
    from PIL import Image

    seen: set[str] = set()
    for folder in folders:
        for path, _ in folder.samples:
            if path in seen:
                continue
            seen.add(path)
            try:
                with Image.open(path) as image:
                    image.size  # noqa: B018 - identified, its size read
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise _unreadable(path, exc) from None


def image_folder(data_dir: Path, seed: int, input_shape: tuple[int, ...] | None, augment: bool
                 ) -> tuple[Dataset, Dataset, Dataset, list[str], tuple[int, int, int]]:
    """torchvision ImageFolder splits of ``data_dir``: its train/, val/ and test/ sub-folders
    when it has them (each one folder per class), else a seeded 80/10/10 split of the folder.
    Images are converted to the network's channels (1: grey, 3: RGB) and resized to its size."""
    if input_shape is None or len(input_shape) != 3 or input_shape[0] not in (1, 3):
        shown = "?" if input_shape is None else list(input_shape)
        raise UsageError(f"--data imagefolder: the network takes {shown}; images need a [1 or 3, H, W] input")
    channels, h, w = input_shape
    plain = _image_transforms(channels, (h, w), False)
    fit = _image_transforms(channels, (h, w), augment)
    present = [d for d in SPLIT_DIRS if (data_dir / d).is_dir()]
    if present:
        if len(present) != 3:
            missing = ", ".join(f"{d}/" for d in SPLIT_DIRS if d not in present)
            raise UsageError(f"--data-dir {data_dir}: has {', '.join(f'{d}/' for d in present)} but not {missing}; "
                             "give all three split folders or none (then bsnc splits 80/10/10)")
        train, val, test = (_folder(data_dir / d, fit if d == "train" else plain) for d in SPLIT_DIRS)
        if not (train.classes == val.classes == test.classes):
            raise UsageError(f"--data-dir {data_dir}: train/, val/ and test/ hold different class folders "
                             f"({train.classes} / {val.classes} / {test.classes})")
        check_images((train, val, test))
        return train, val, test, list(train.classes), (channels, h, w)
    whole_fit, whole = _folder(data_dir, fit), _folder(data_dir, plain)
    n = len(whole)
    perm = np.random.default_rng([seed % 2**63]).permutation(n)
    n_val, n_test = round(n * IMAGE_SPLIT[1]), round(n * IMAGE_SPLIT[2])
    if n - n_val - n_test < 1 or n_val < 1 or n_test < 1:
        raise UsageError(f"--data-dir {data_dir}: {n} images are too few to split 80/10/10 into train, validation "
                         "and test")
    check_images((whole,))
    ids = [perm[n_val + n_test:], perm[:n_val], perm[n_val:n_val + n_test]]
    return (Subset(whole_fit, ids[0].tolist()), Subset(whole, ids[1].tolist()), Subset(whole, ids[2].tolist()),
            list(whole.classes), (channels, h, w))
