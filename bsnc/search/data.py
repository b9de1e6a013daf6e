"""Datasets for `bsnc train`: a registry of loaders that read local files only (this project never
downloads anything), each giving seeded train/val/test splits of ``(x, y)`` pairs:

* classification: ``x`` a float tensor of the input shape, ``y`` a scalar long tensor;
* segmentation: ``x`` a float ``[C, H, W]`` tensor, ``y`` a long ``[H, W]`` tensor of classes.

Image inputs are scaled to [-1, 1]. Splits are a pure function of the dataset's files and the
seed. Random augmentation draws from torch's random generator: the global one when a
DataLoader has no workers, each worker's (seeded from the loader's generator) otherwise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from bsnc.errors import BsncError, UsageError
from bsnc.files import read_regular
from bsnc.ir import Network

Shape = tuple[int, ...]

CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"


@dataclass(frozen=True)
class DataInfo:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    task: str  # "classification" or "segmentation"

    @property
    def output_shape(self) -> tuple[int, ...]:
        """What a network must output per example: [classes] or [classes, H, W]."""
        if self.task == SEGMENTATION:
            return (self.num_classes, *self.input_shape[-2:])
        return (self.num_classes,)


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    info: DataInfo


Loader = Callable[[Path | None, int, Shape | None, int | None, bool], Splits]


@dataclass(frozen=True)
class DatasetEntry:
    description: str  # one line, for --help and error messages
    load: Loader  # (data_dir, seed, input_shape, num_classes, augment) -> Splits


DATASETS: dict[str, DatasetEntry] = {}


def _register(name: str, description: str) -> Callable[[Loader], Loader]:
    def add(load: Loader) -> Loader:
        DATASETS[name] = DatasetEntry(description, load)
        return load

    return add


def dataset_help() -> str:
    """One line per dataset: ``name: description``."""
    return "\n".join(f"{name}: {entry.description}" for name, entry in DATASETS.items())


def load_data(name: str, data_dir: Path | None, seed: int, input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None, augment: bool = True) -> Splits:
    """The splits of dataset ``name``. ``input_shape`` and ``num_classes`` size the generated
    datasets (synthetic-seg, fake); datasets read from files have fixed shapes and ignore them
    (`check_compatible` then compares). ``augment`` enables the training split's augmentation."""
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
    entry = DATASETS.get(name)
    if entry is not None:
        return entry.load(data_dir, int(seed), input_shape, num_classes, augment)
    from bsnc.search import userdata

    function = userdata.find_function(name)
    if function is None:
        installed = userdata.entry_point_names()
        raise UsageError(f"--data {name}: unknown dataset '{name}'; expected one of: {', '.join(DATASETS)}"
                         f"{', ' + ', '.join(installed) if installed else ''}, or package.module:function")
    made = userdata.call_function(name, function, data_dir=data_dir, seed=int(seed), input_shape=input_shape,
                                  num_classes=num_classes, augment=augment)
    if isinstance(made, Splits):
        return made
    return user_splits(name, userdata.triple(name, made), num_classes)


def user_splits(name: str, datasets: Sequence[Dataset], num_classes: int | None = None) -> Splits:
    """`Splits` of the user's (train, val, test) datasets of ``(x, y)`` pairs: the input shape is the
    first example's; ``y`` a scalar means classification, an ``[H, W]`` map segmentation; the
    classes are the train set's ``classes`` when it has them, else ``num_classes`` (the network's)."""
    from bsnc.search import userdata

    train, val, test = datasets
    x, y = userdata.first_example(name, "train", train)
    for split, dataset in (("validation", val), ("test", test)):
        userdata.first_example(name, split, dataset)
    if y.dim() not in (0, 2):
        raise UsageError(f"--data {name}: labels of shape {_fmt(y.shape)}; expected a class index (classification) "
                         "or an [H, W] map of class indices (segmentation)")
    classes = getattr(train, "classes", None)
    if classes is None and isinstance(train, Subset):
        classes = getattr(train.dataset, "classes", None)
    count = len(classes) if isinstance(classes, Sequence) and classes else num_classes
    if count is None:
        raise UsageError(f"--data {name}: cannot tell the number of classes; give the train set a 'classes' list")
    task = SEGMENTATION if y.dim() == 2 else CLASSIFICATION
    return Splits(train, val, test, DataInfo(name, tuple(x.shape), int(count), task))


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                sampler: Sampler | None = None, *, pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose shuffling (and its workers' random seeds) come from a generator seeded
    with ``seed``: the same seed gives the same batches. With a ``sampler`` (e.g. a
    DistributedSampler), the sampler orders the examples and ``shuffle`` is ignored."""
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=generator, num_workers=num_workers, pin_memory=pin_memory, drop_last=False)


# --- compatibility with a network --------------------------------------------------------------


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_compatible(info: DataInfo, network: Network) -> None:
    """Raise a UsageError unless the network takes the dataset's inputs and outputs one score per
    class (per pixel for segmentation), suggesting -D overrides from the network's parameters."""
    got_in = tuple(network.layer(network.input).shape)
    got_out = tuple(network.layer(network.output).shape)
    want_in = tuple(info.input_shape)
    want_out = info.output_shape
    if got_in == want_in and got_out == want_out:
        return

    problems = []
    if got_in != want_in:
        problems.append(f"takes {_fmt(got_in)}")
    if got_out != want_out:
        problems.append(f"outputs {_fmt(got_out)}")
    per_pixel = f" per pixel (a {_fmt(want_out)} output)" if info.task == SEGMENTATION else ""
    message = (f"dataset {info.name} gives {_fmt(want_in)} inputs and {info.num_classes} classes{per_pixel}, "
               f"but network {network.name} {' and '.join(problems)}")

    # Guess overrides from conventional parameter names; follow what each would fix.
    params = network.params
    fixes: list[str] = []
    fixed_in, fixed_out = got_in, got_out
    if len(want_in) == 3 and len(got_in) == 3:
        if "in_channels" in params and got_in[0] != want_in[0]:
            fixes.append(f"in_channels={want_in[0]}")
            fixed_in = (want_in[0], *fixed_in[1:])
        if "size" in params and want_in[1] == want_in[2] and got_in[1:] != want_in[1:]:
            fixes.append(f"size={want_in[1]}")
            fixed_in = (fixed_in[0], *want_in[1:])
            if len(fixed_out) == 3:
                fixed_out = (fixed_out[0], *want_in[1:])
    wants_seg = info.task == SEGMENTATION
    if (params.get("segmentation") is (not wants_seg) and len(got_out) != len(want_out)
            and len(want_in) == 3 and len(got_in) == 3):
        fixes.append(f"segmentation={'true' if wants_seg else 'false'}")
        fixed_out = want_out if wants_seg else (fixed_out[0],)
    if "classes" in params and got_out and got_out[0] != info.num_classes:
        fixes.append(f"classes={info.num_classes}")
        fixed_out = (info.num_classes, *fixed_out[1:])
    remaining = []
    if fixed_in != want_in:
        remaining.append(f"take {_fmt(want_in)}")
    if fixed_out != want_out:
        remaining.append(f"output {_fmt(want_out)}")
    if fixes:
        message += "; try " + " ".join(f"-D {fix}" for fix in fixes)
        if remaining:
            message += f" (not enough: it must also {' and '.join(remaining)})"
    else:
        message += f"; it must {' and '.join(remaining)}"
    raise UsageError(message)


# --- helpers ------------------------------------------------------------------------------------


def _rng(*keys: int) -> np.random.Generator:
    """A numpy generator determined by ``keys`` (any ints)."""
    return np.random.default_rng([k % 2**63 for k in keys])


def _split_ids(n: int, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded permutation of range(n) cut into train/val/test; val and test take ``fractions``."""
    perm = _rng(seed).permutation(n)
    n_val = round(n * fractions[0])
    n_test = round(n * fractions[1])
    n_train = n - n_val - n_test
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def _unit_range(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [-1, 1], as torchvision's ToTensor then Normalize(0.5, 0.5)."""
    return (pixels.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


def _require_dir(name: str, data_dir: Path | None, hint: str) -> Path:
    if data_dir is None:
        raise UsageError(f"--data {name} needs --data-dir DIR: {hint}")
    if not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such directory ({name} needs it: {hint})")
    return data_dir


def _shape_arg(name: str, input_shape: Shape | None, default: Shape, rank: int | None = None) -> Shape:
    shape = tuple(default if input_shape is None else input_shape)
    if (rank is not None and len(shape) != rank) or not shape or any(d < 1 for d in shape):
        need = "a [channels, height, width] input shape" if rank == 3 else "an input shape"
        raise UsageError(f"--data {name}: needs {need} of positive sizes, got {_fmt(shape)}")
    return shape


def _classes_arg(name: str, num_classes: int | None, default: int, least: int) -> int:
    classes = default if num_classes is None else int(num_classes)
    if classes < least:
        raise UsageError(f"--data {name}: needs at least {least} classes, got {classes}")
    return classes


# --- digits -------------------------------------------------------------------------------------


# The UCI digits (Alpaydin & Kaynak 1998, CC BY 4.0) as scikit-learn ships them, stored in the
# package as uint8 counts 0..16 (tests/regen_digits.py made the file).
DIGITS_FILE = "digits.npz"


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits: images ``[1797, 8, 8]`` of counts 0..16 and labels ``[1797]``."""
    from importlib.resources import files

    with files("bsnc.search").joinpath(DIGITS_FILE).open("rb") as handle, np.load(handle) as arrays:
        return arrays["images"], arrays["labels"]


@_register("digits", "1,797 real 8x8 handwritten digits (UCI, as in scikit-learn), 10 classes "
                    "(shipped inside bsnc, no files)")
def _load_digits(data_dir: Path | None, seed: int, input_shape: Shape | None, num_classes: int | None,
                 augment: bool) -> Splits:
    images, labels = digits_arrays()
    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8.0 - 1.0  # 0..16 -> [-1, 1]
    y = torch.as_tensor(labels, dtype=torch.long)
    train, val, test = (torch.as_tensor(ids) for ids in _split_ids(len(y), (0.15, 0.15), seed))
    info = DataInfo("digits", (1, 8, 8), 10, CLASSIFICATION)
    return Splits(TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]),
                  TensorDataset(x[test], y[test]), info)


# --- CIFAR-10 / CIFAR-100 -----------------------------------------------------------------------


def _load_cifar(name: str, data_dir: Path | None, seed: int, augment: bool) -> Splits:
    from bsnc.search import cifar

    base, train_files, test_files, meta = cifar.files(name)
    title, archive = cifar.TITLES[name], cifar.CLASSES[name].filename
    unpack = (f"download {title} (python version) from {cifar.URL} and unpack {archive} "
              f"there (it holds {base}/)")
    root = _require_dir(name, data_dir, f"the directory that holds {base}/; {unpack}")
    folder = root / base
    if not folder.is_dir() and root.name == base:
        folder = root  # pointed at the unpacked folder itself
    files = [*train_files, *test_files, meta]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        listed = f"{folder}/{{{', '.join(files)}}}"
        absent = "none of them" if len(missing) == len(files) else ", ".join(missing)
        raise UsageError(f"--data-dir {data_dir}: {name} expects {listed} (not found: {absent}); {unpack}")
    train, val, test = cifar.splits(name, root, folder, seed, augment)
    return Splits(train, val, test, DataInfo(name, (3, 32, 32), 10 if name == "cifar10" else 100, CLASSIFICATION))


@_register("cifar10", "CIFAR-10 from --data-dir (cifar-10-batches-py/; pickles read by a restricted "
                     "unpickler), 32x32 colour, 10 classes")
def _load_cifar10(data_dir: Path | None, seed: int, input_shape: Shape | None, num_classes: int | None,
                  augment: bool) -> Splits:
    return _load_cifar("cifar10", data_dir, seed, augment)


@_register("cifar100", "CIFAR-100 from --data-dir (cifar-100-python/; pickles read by a restricted "
                      "unpickler), 32x32 colour, 100 classes")
def _load_cifar100(data_dir: Path | None, seed: int, input_shape: Shape | None, num_classes: int | None,
                   augment: bool) -> Splits:
    return _load_cifar("cifar100", data_dir, seed, augment)


@_register("imagefolder", "your images in --data-dir: one sub-folder per class (torchvision ImageFolder), "
                         "resized to the network's input; split by train/ val/ test/ or 80/10/10")
def _load_imagefolder(data_dir: Path | None, seed: int, input_shape: Shape | None, num_classes: int | None,
                      augment: bool) -> Splits:
    from bsnc.search import userdata

    root = _require_dir("imagefolder", data_dir, "a folder with one sub-folder of images per class "
                        "(or train/, val/ and test/ folders laid out so)")
    train, val, test, classes, shape = userdata.image_folder(root, seed, input_shape, augment)
    return Splits(train, val, test, DataInfo("imagefolder", shape, len(classes), CLASSIFICATION))


# --- LFW Part Labels ----------------------------------------------------------------------------

# Label maps are RGB: red = hair, green = skin, blue = background; the class is the channel.
PARTLABELS_CLASSES = ("hair", "skin", "background")
PARTLABELS_BACKGROUND = 2
PARTLABELS_SIZE = 256
_PARTLABELS_SPLITS = ("parts_train.txt", "parts_validation.txt", "parts_test.txt")
_PARTLABELS_SOURCES = ("download lfw-funneled.tgz from http://vis-www.cs.umass.edu/lfw/ and "
                       "parts_lfw_funneled_gt_images.tgz and parts_{train,validation,test}.txt from "
                       "http://vis-www.cs.umass.edu/lfw/part_labels/, and unpack them there")
_PARTLABELS_LAYOUT = ("parts_train.txt, parts_validation.txt, parts_test.txt, "
                      "lfw_funneled/<Name>/<Name>_<NNNN>.jpg and parts_lfw_funneled_gt_images/<Name>_<NNNN>.ppm")


def _partlabels_paths(root: Path, name: str, number: int) -> tuple[Path, Path]:
    stem = f"{name}_{number:04d}"
    return root / "lfw_funneled" / name / f"{stem}.jpg", root / "parts_lfw_funneled_gt_images" / f"{stem}.ppm"


def partlabels_classes(label_rgb: np.ndarray) -> np.ndarray:
    """An ``[H, W, 3]`` label map to ``[H, W]`` classes: the strongest channel; black is background."""
    classes = label_rgb.argmax(axis=-1)
    classes[label_rgb.max(axis=-1) == 0] = PARTLABELS_BACKGROUND
    return classes.astype(np.int64)


class PartLabels(Dataset):
    """LFW Part Labels images and label maps, read on demand, zero-padded (in the [-1, 1] input
    space; labels with background) to 256x256, centred; with ``augment``, flipped horizontally
    with p = 1/2 (image and labels together)."""

    def __init__(self, root: Path, entries: Sequence[tuple[str, int]], augment: bool = False):
        self.root = root
        self.entries = list(entries)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:

        image_path, label_path = _partlabels_paths(self.root, *self.entries[i])
        rgb = _read_rgb(image_path)
        label = partlabels_classes(_read_rgb(label_path))
        h, w = rgb.shape[:2]
        if label.shape != (h, w) or h > PARTLABELS_SIZE or w > PARTLABELS_SIZE:
            raise BsncError(f"partlabels: {image_path} is {w}x{h} and {label_path} is "
                            f"{label.shape[1]}x{label.shape[0]}; expected equal sizes of at most "
                            f"{PARTLABELS_SIZE}x{PARTLABELS_SIZE}")
        top, left = (PARTLABELS_SIZE - h) // 2, (PARTLABELS_SIZE - w) // 2
        pad = (left, PARTLABELS_SIZE - w - left, top, PARTLABELS_SIZE - h - top)
        x = F.pad(torch.from_numpy(_unit_range(rgb.transpose(2, 0, 1))), pad, value=0.0)
        y = F.pad(torch.from_numpy(label), pad, value=PARTLABELS_BACKGROUND)
        if self.augment and torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y


def _read_rgb(path: Path) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8; a missing, truncated, corrupt or oversized (a
    decompression bomb) file is a BsncError naming it, not a PIL traceback mid-epoch."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise BsncError(f"--data partlabels: {path}: cannot read this image ({detail})") from None


def _read_split_list(root: Path, file: str) -> list[tuple[str, int]]:
    path = root / file
    entries = []
    text = read_regular(path, 64 * 1024 * 1024, f"--data partlabels: {path}").decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise UsageError(f"--data partlabels: {path}:{number}: expected 'Name N', got {line.strip()!r}")
        entries.append((fields[0], int(fields[1])))
    if not entries:
        raise UsageError(f"--data partlabels: {path} lists no images")
    return entries


@_register("partlabels", "LFW Part Labels from --data-dir: 250x250 faces padded to 256, "
                         "per-pixel hair/skin/background")
def _load_partlabels(data_dir: Path | None, seed: int, input_shape: Shape | None, num_classes: int | None,
                     augment: bool) -> Splits:
    root = _require_dir("partlabels", data_dir, f"the directory that holds {_PARTLABELS_LAYOUT}; "
                                                f"{_PARTLABELS_SOURCES}")
    missing_lists = [str(root / f) for f in _PARTLABELS_SPLITS if not (root / f).is_file()]
    if missing_lists:
        raise UsageError(f"--data-dir {data_dir}: partlabels expects {_PARTLABELS_LAYOUT} there "
                         f"(not found: {', '.join(missing_lists)}); {_PARTLABELS_SOURCES}")
    splits = [_read_split_list(root, f) for f in _PARTLABELS_SPLITS]
    missing = [str(p) for entries in splits for entry in entries for p in _partlabels_paths(root, *entry)
               if not p.is_file()]
    if missing:
        total = 2 * sum(len(entries) for entries in splits)
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise UsageError(f"--data-dir {data_dir}: partlabels is missing {len(missing)} of the {total} images and "
                         f"label maps listed in {', '.join(_PARTLABELS_SPLITS)}: {shown}; {_PARTLABELS_SOURCES}")
    info = DataInfo("partlabels", (3, PARTLABELS_SIZE, PARTLABELS_SIZE), len(PARTLABELS_CLASSES), SEGMENTATION)
    return Splits(PartLabels(root, splits[0], augment=augment), PartLabels(root, splits[1]),
                  PartLabels(root, splits[2]), info)


# --- synthetic-seg ------------------------------------------------------------------------------


class _Procedural(Dataset):
    """A made-up split whose example ``i`` is a function of (seed, split, i), made on demand."""

    def __init__(self, shape: Shape, classes: int, seed: int, split: int, length: int):
        self.shape = shape
        self.classes = classes
        self.seed = seed
        self.split = split
        self.length = length

    def __len__(self) -> int:
        return self.length


def _shape_mask(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if kind == "disc":
        return dy ** 2 + dx ** 2 <= r * r
    if kind == "square":
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if kind == "ring":
        return (dy ** 2 + dx ** 2 <= r * r) & (dy ** 2 + dx ** 2 >= (0.55 * r) ** 2)
    if kind == "cross":
        return ((np.abs(dy) <= r / 3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r / 3) & (np.abs(dy) <= r))
    if kind == "diamond":
        return np.abs(dy) + np.abs(dx) <= 1.2 * r
    return (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2)  # triangle, pointing up


SHAPES = ("disc", "square", "ring", "cross", "diamond", "triangle")


class SyntheticSegmentation(_Procedural):
    """Procedural images where a pixel's class is not in its own value: one to four shapes on a
    background, each kind of shape its own class (disc 1, square 2, ring 3, cross 4, diamond 5,
    triangle 6; background 0), but every shape painted in the same colour (0.5 on every channel,
    the background -0.5, plus Gaussian noise): a pixel's value tells shape from background, and
    only its surroundings tell which shape, so a per-pixel classifier cannot do better than
    guessing the commonest shape."""

    noise = 0.1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        channels, h, w = self.shape
        rng = _rng(self.seed, self.split, i)
        yy, xx = np.mgrid[0:h, 0:w]
        label = np.zeros((h, w), dtype=np.int64)
        for _ in range(int(rng.integers(1, 5))):
            k = int(rng.integers(1, self.classes))
            r = rng.uniform(0.15, 0.3) * min(h, w)
            mask = _shape_mask(SHAPES[k - 1], yy, xx, rng.uniform(0, h), rng.uniform(0, w), r)
            label[mask] = k
        x = np.where(label[None] > 0, 0.5, -0.5) + rng.normal(0.0, 1.0, (channels, h, w)) * self.noise
        return torch.from_numpy(np.clip(x, -1.0, 1.0).astype(np.float32)), torch.from_numpy(label)


@_register("synthetic-seg", "generated shapes, one class per kind of shape, all one colour: context "
                            "decides a pixel's class (sized like the network; 512/128/128 examples)")
def _load_synthetic_seg(data_dir: Path | None, seed: int, input_shape: Shape | None, num_classes: int | None,
                        augment: bool) -> Splits:
    shape = _shape_arg("synthetic-seg", input_shape, (3, 32, 32), rank=3)
    classes = _classes_arg("synthetic-seg", num_classes, 3, 2)
    if classes > len(SHAPES) + 1:
        raise UsageError(f"--data synthetic-seg: at most {len(SHAPES) + 1} classes (background and "
                         f"{', '.join(SHAPES)}), got {classes}")
    parts = [SyntheticSegmentation(shape, classes, seed, split, n) for split, n in enumerate((512, 128, 128))]
    return Splits(*parts, DataInfo("synthetic-seg", shape, classes, SEGMENTATION))


# --- fake ---------------------------------------------------------------------------------------


class FakeData(_Procedural):
    """Standard normal inputs with uniform random labels, plus a faint fixed pattern per class
    (uniform in [-0.5, 0.5]) so that a model can learn something."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = _rng(self.seed, self.split, i)
        y = int(rng.integers(self.classes))
        x = rng.standard_normal(self.shape) + _rng(0xFA4E, y).uniform(-0.5, 0.5, self.shape)
        return torch.from_numpy(x.astype(np.float32)), torch.tensor(y, dtype=torch.long)


@_register("fake", "random inputs and labels sized like the network (256/64/64 examples), for tests")
def _load_fake(data_dir: Path | None, seed: int, input_shape: Shape | None, num_classes: int | None,
               augment: bool) -> Splits:
    shape = _shape_arg("fake", input_shape, (3, 32, 32))
    classes = _classes_arg("fake", num_classes, 10, 1)
    parts = [FakeData(shape, classes, seed, split, n) for split, n in enumerate((256, 64, 64))]
    return Splits(*parts, DataInfo("fake", shape, classes, CLASSIFICATION))


__all__ = ["DATASETS", "DataInfo", "DatasetEntry", "Splits", "check_compatible", "dataset_help", "load_data",
           "make_loader"]
