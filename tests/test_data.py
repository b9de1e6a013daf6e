"""Datasets: every loader on real or fabricated files in the published layouts, splits, value
ranges, augmentation, the missing-file messages, and network compatibility checks."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bsnc.errors import UsageError
from bsnc.lang.frontend import load_network, network_from_text
from bsnc.search.data import (
    DATASETS,
    PARTLABELS_BACKGROUND,
    DataInfo,
    check_compatible,
    dataset_help,
    load_data,
    make_loader,
)
from tests.conftest import FABRICS


def _all(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.stack(ys)


# --- registry -----------------------------------------------------------------------------------


def test_registry_lists_every_dataset_with_a_description():
    assert list(DATASETS) == ["digits", "cifar10", "cifar100", "imagefolder", "partlabels", "synthetic-seg", "fake"]
    from bsnc.cliparams import DATASET_NAMES  # what shell completion offers without importing torch

    assert list(DATASET_NAMES) == list(DATASETS)
    for name, entry in DATASETS.items():
        assert entry.description and "\n" not in entry.description
        assert f"{name}: {entry.description}" in dataset_help()


def test_unknown_dataset_names_the_choices():
    with pytest.raises(UsageError) as err:
        load_data("mnist", None, 0)
    assert str(err.value) == ("--data mnist: unknown dataset 'mnist'; expected one of: "
                              "digits, cifar10, cifar100, imagefolder, partlabels, synthetic-seg, fake, "
                              "or package.module:function")


# --- digits -------------------------------------------------------------------------------------


# sha256 of the images then labels of scikit-learn's load_digits() as uint8 (tests/regen_digits.py)
DIGITS_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"


def test_shipped_digits_are_scikit_learns_and_small():
    import hashlib

    from bsnc.search.data import digits_arrays

    images, labels = digits_arrays()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.dtype == labels.dtype == np.uint8 and images.max() == 16 and set(labels.tolist()) == set(range(10))
    assert hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest() == DIGITS_SHA256
    shipped = Path(__file__).resolve().parent.parent / "bsnc" / "search" / "digits.npz"
    assert shipped.stat().st_size < 64_000


def test_digits_real_images_split_70_15_15_in_minus_one_to_one():
    from bsnc.search.data import digits_arrays

    splits = load_data("digits", None, seed=0)
    assert splits.info == DataInfo("digits", (1, 8, 8), 10, "classification")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1257, 270, 270)
    parts = [_all(d) for d in (splits.train, splits.val, splits.test)]
    xs = torch.cat([x for x, _ in parts])
    ys = torch.cat([y for _, y in parts])
    assert xs.shape == (1797, 1, 8, 8) and xs.dtype == torch.float32
    assert ys.dtype == torch.long and parts[0][1][0].shape == ()
    assert xs.min() == -1.0 and xs.max() == 1.0
    # the three splits are a partition of the 1,797 shipped images
    images, labels = digits_arrays()
    assert torch.equal(torch.bincount(ys, minlength=10), torch.bincount(torch.as_tensor(labels, dtype=torch.long)))
    original = {tuple(row) + (int(t),) for row, t in zip(images.reshape(-1, 64).astype(int), labels)}
    ours = {tuple(((x.flatten() + 1) * 8).round().int().tolist()) + (int(y),) for x, y in zip(xs, ys)}
    assert ours == original
    for _, y in parts:
        assert set(y.tolist()) == set(range(10))


def test_digits_split_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = (load_data("digits", None, seed=s) for s in (3, 3, 4))
    assert torch.equal(_all(a.train)[0], _all(b.train)[0])
    assert torch.equal(_all(a.test)[1], _all(b.test)[1])
    assert not torch.equal(_all(a.train)[0], _all(c.train)[0])
    # the digits have no augmentation: the same item twice is the same tensor
    assert torch.equal(a.train[5][0], a.train[5][0])


# --- CIFAR --------------------------------------------------------------------------------------


def _image(index: int) -> np.ndarray:
    """A 3x32x32 uint8 image whose pixel (0, 0, 0) and (1, 0, 0) encode ``index``, with an
    asymmetric ramp so that crops and flips are visible."""
    image = np.add.outer(np.arange(32) * 3, np.arange(32) * 5)[None].repeat(3, axis=0) + index
    image = (image % 256).astype(np.uint8)
    image[0, 0, 0], image[1, 0, 0] = index % 256, index // 256
    return image


def _write_cifar(root: Path, kind: str, per_file: int) -> list[int]:
    """The python-pickle layout of CIFAR with ``per_file`` images per batch; returns labels by
    global image index (training images first, then test images)."""
    if kind == "cifar10":
        folder, train_files, test_files = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
        meta, key, classes = ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]}), "labels", 10
    else:
        folder, train_files, test_files = root / "cifar-100-python", ["train"], ["test"]
        meta, key, classes = ("meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                       "coarse_label_names": [f"k{i}" for i in range(20)]}), "fine_labels", 100
    folder.mkdir(parents=True)
    labels, index = [], 0
    for file in train_files + test_files:
        count = per_file * (5 if kind == "cifar100" and file == "train" else 1)
        ids = range(index, index + count)
        batch_labels = [(7 * i) % classes for i in ids]
        entry = {"batch_label": file, key: batch_labels, "filenames": [f"img{i}.png" for i in ids],
                 "data": np.stack([_image(i).reshape(-1) for i in ids])}
        if kind == "cifar100":
            entry["coarse_labels"] = [label // 5 for label in batch_labels]
        (folder / file).write_bytes(pickle.dumps(entry, protocol=2))
        labels += batch_labels
        index += count
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    return labels


def _identify(x: torch.Tensor) -> int:
    pixels = ((x + 1) * 127.5).round().long()
    return int(pixels[0, 0, 0]) + 256 * int(pixels[1, 0, 0])


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_reads_the_pickle_layout_and_splits_train_into_train_and_val(tmp_path, kind):
    labels = _write_cifar(tmp_path, kind, per_file=4)  # 20 training images, 4 test images
    splits = load_data(kind, tmp_path, seed=0, augment=False)
    classes = 10 if kind == "cifar10" else 100
    assert splits.info == DataInfo(kind, (3, 32, 32), classes, "classification")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 4)  # val: a tenth

    seen = []
    for dataset in (splits.train, splits.val, splits.test):
        for i in range(len(dataset)):
            x, y = dataset[i]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            assert y.dtype == torch.long and y.shape == ()
            assert -1.0 <= x.min() and x.max() <= 1.0
            k = _identify(x)
            assert int(y) == labels[k]
            # ToTensor then (x - 0.5) / 0.5
            assert torch.allclose(x, (torch.from_numpy(_image(k)).float() / 255 - 0.5) / 0.5)
            seen.append(k)
    assert sorted(seen[:20]) == list(range(20)) and seen[20:] == [20, 21, 22, 23]

    again = load_data(kind, tmp_path, seed=0, augment=False)
    other = load_data(kind, tmp_path, seed=1, augment=False)
    val_ids = [_identify(x) for x, _ in (splits.val[i] for i in range(2))]
    assert val_ids == [_identify(again.val[i][0]) for i in range(2)]
    assert any(sorted(val_ids) != sorted(_identify(load_data(kind, tmp_path, seed=s, augment=False).val[i][0])
                                         for i in range(2)) for s in range(1, 6))
    assert [_identify(other.train[i][0]) for i in range(18)] != [_identify(splits.train[i][0]) for i in range(18)]


def test_cifar_augments_only_the_training_split(tmp_path):
    _write_cifar(tmp_path, "cifar10", per_file=2)
    splits = load_data("cifar10", tmp_path, seed=0)  # augment=True by default
    torch.manual_seed(0)
    x0 = splits.train[0][0]
    draws = [splits.train[0][0] for _ in range(20)]
    assert any(not torch.equal(x0, d) for d in draws)  # random crops and flips
    # every draw is a 32x32 crop of the image padded by 4 (black = -1), maybe flipped
    original = torch.from_numpy(_image(int(splits.train.indices[0]))).float() / 127.5 - 1
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4), value=-1.0)
    crops = [padded[:, t:t + 32, s:s + 32] for t in range(9) for s in range(9)]
    candidates = crops + [c.flip(-1) for c in crops]
    flips = 0
    for d in draws:
        match = [i for i, c in enumerate(candidates) if torch.allclose(d, c, atol=1e-6)]
        assert match
        flips += match[0] >= len(crops)
    assert 0 < flips < len(draws)
    assert -1.0 <= min(float(d.min()) for d in draws) and max(float(d.max()) for d in draws) <= 1.0
    for dataset in (splits.val, splits.test):
        assert torch.equal(dataset[0][0], dataset[0][0])
    plain = load_data("cifar10", tmp_path, seed=0, augment=False)
    assert torch.equal(plain.train[0][0], plain.train[0][0])
    assert torch.allclose(plain.train[0][0], original)


def test_cifar_accepts_the_unpacked_folder_itself(tmp_path):
    _write_cifar(tmp_path, "cifar10", per_file=2)
    splits = load_data("cifar10", tmp_path / "cifar-10-batches-py", seed=0)
    assert len(splits.train) + len(splits.val) == 10


def test_cifar_missing_files_name_what_is_expected_where(tmp_path):
    with pytest.raises(UsageError) as err:
        load_data("cifar10", None, 0)
    assert str(err.value).startswith("--data cifar10 needs --data-dir DIR: the directory that holds cifar-10-batches-py/")

    with pytest.raises(UsageError) as err:
        load_data("cifar10", tmp_path / "nowhere", 0)
    assert str(err.value).startswith(f"--data-dir {tmp_path / 'nowhere'}: no such directory")

    with pytest.raises(UsageError) as err:
        load_data("cifar10", tmp_path, 0)
    folder = tmp_path / "cifar-10-batches-py"
    assert str(err.value) == (
        f"--data-dir {tmp_path}: cifar10 expects {folder}/{{data_batch_1, data_batch_2, data_batch_3, "
        "data_batch_4, data_batch_5, test_batch, batches.meta} (not found: none of them); download CIFAR-10 "
        "(python version) from https://www.cs.toronto.edu/~kriz/cifar.html and unpack cifar-10-python.tar.gz "
        "there (it holds cifar-10-batches-py/)")

    _write_cifar(tmp_path, "cifar10", per_file=2)
    (folder / "data_batch_3").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(UsageError, match=r"\(not found: data_batch_3, test_batch\); download CIFAR-10"):
        load_data("cifar10", tmp_path, 0)

    with pytest.raises(UsageError) as err:
        load_data("cifar100", tmp_path, 0)
    assert f"cifar100 expects {tmp_path / 'cifar-100-python'}/{{train, test, meta}} (not found: none of them)" \
        in str(err.value)


def test_cifar_unreadable_batch_is_a_usage_error(tmp_path):
    _write_cifar(tmp_path, "cifar10", per_file=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match=r"data_batch_2 is not a CIFAR-10 python batch"):
        load_data("cifar10", tmp_path, 0)


class _Planted:
    """Unpickling this calls os.system: it writes a marker file if the payload ever runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_cifar_refuses_a_planted_pickle_without_running_it(tmp_path, where):
    _write_cifar(tmp_path, "cifar10", per_file=2)
    marker = tmp_path / "payload-ran"
    path = tmp_path / "cifar-10-batches-py" / where
    path.write_bytes(pickle.dumps({"data": _Planted(marker), "labels": [0, 1]}, protocol=2))
    with pytest.raises(UsageError) as err:
        load_data("cifar10", tmp_path, 0)
    assert str(err.value) == (f"--data cifar10: {path} is not a CIFAR-10 python batch and was refused unread: "
                              "it names posix.system, which a CIFAR batch never holds (refused; nothing was run)")
    assert not marker.exists()
    # the same through the command line: a located message, no traceback, exit 1, payload not run
    from click.testing import CliRunner

    from bsnc.cli import main

    fabric = Path(__file__).resolve().parent.parent / "fabrics" / "resnet20.bsn"
    result = CliRunner().invoke(main, ["train", str(fabric), "--data", "cifar10", "--data-dir", str(tmp_path),
                                       "--epochs", "1", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and "was refused unread" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_restricted_unpickler_refuses_object_arrays_and_foreign_globals(tmp_path):
    from bsnc.search.safe_pickle import RefusedPickle, load_restricted

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(RefusedPickle, match="dtype 'O8'"):
        load_restricted(path)
    path.write_bytes(pickle.dumps({"data": collections.OrderedDict()}, protocol=2))
    with pytest.raises(RefusedPickle, match="collections.OrderedDict"):
        load_restricted(path)
    path.write_bytes(pickle.dumps(np.float64(1.5), protocol=2))  # a numpy scalar: not in CIFAR
    with pytest.raises(RefusedPickle, match="numpy.*scalar"):
        load_restricted(path)


@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_reads_arrays_like_pickle(tmp_path, protocol):
    from bsnc.search.safe_pickle import load_restricted

    value = {"data": np.arange(24, dtype=np.uint8).reshape(2, 12), "big": np.array([[1.5, 2], [3, 4]], ">f8"),
             "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)), "labels": [3, 4],
             "filenames": ["a.png", b"b.png"], "pair": (1, 2.5, None, True)}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    loaded = load_restricted(path)
    assert loaded.keys() == value.keys()
    for key in ("data", "big", "fortran"):
        assert loaded[key].dtype == value[key].dtype and np.array_equal(loaded[key], value[key])
    assert [loaded[k] for k in ("labels", "filenames", "pair")] == [value[k] for k in ("labels", "filenames", "pair")]


def test_cifar_reads_a_python2_style_batch_whose_data_is_a_latin1_string(tmp_path):
    """The real CIFAR files were pickled by Python 2: the array's bytes are a str that must be
    read as latin-1. Fabricate that layout by hand (protocol 2 opcodes) and read it."""
    _write_cifar(tmp_path, "cifar10", per_file=2)
    folder = tmp_path / "cifar-10-batches-py"
    images = np.stack([_image(i).reshape(-1) for i in range(2)])

    def py2str(raw: bytes) -> bytes:  # Python 2's str: SHORT_BINSTRING or BINSTRING
        return (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + len(raw).to_bytes(4, "little")) + raw

    array = (b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nK\x00\x85U\x01b\x87R("
             b"K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\n" + py2str(b"u1") + b"K\x00K\x01\x87R"
             b"(K\x03" + py2str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
             + py2str(images.tobytes()) + b"tb")
    batch = b"\x80\x02}(" + py2str(b"data") + array + py2str(b"labels") + b"](K\x03K\x04eu."
    (folder / "data_batch_1").write_bytes(batch)
    splits = load_data("cifar10", tmp_path, seed=0, augment=False)
    found = {}
    for dataset in (splits.train, splits.val):
        for x, y in (dataset[i] for i in range(len(dataset))):
            k = _identify(x)
            assert torch.allclose(x, torch.from_numpy(_image(k)).float() / 127.5 - 1)
            found[k] = int(y)
    assert found[0] == 3 and found[1] == 4  # images 0 and 1 with the labels of the hand-made batch


# --- LFW Part Labels ----------------------------------------------------------------------------

_PEOPLE = {"train": [("Aaron_Eckhart", 1), ("Zoe_Ball", 1), ("Zoe_Ball", 12)],
           "validation": [("Abel_Pacheco", 3)], "test": [("Ana_Guevara", 2), ("Ana_Guevara", 7)]}


def _write_partlabels(root: Path) -> None:
    """LFW Part Labels layout: a bright band on the left of each face (hair in the label map),
    skin in the middle, background on the right."""
    for split, entries in _PEOPLE.items():
        (root / f"parts_{split}.txt").write_text("".join(f"{name} {n}\n" for name, n in entries))
        for name, n in entries:
            image = np.full((250, 250, 3), 30, dtype=np.uint8)
            image[:, :100] = 230
            image[:, 100:150] = 130
            label = np.zeros((250, 250, 3), dtype=np.uint8)
            label[:, :100, 0] = 255  # hair
            label[:, 100:150, 1] = 255  # skin
            label[:, 150:, 2] = 255  # background
            (root / "lfw_funneled" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "lfw_funneled" / name / f"{name}_{n:04d}.jpg", quality=95)
            (root / "parts_lfw_funneled_gt_images").mkdir(exist_ok=True)
            Image.fromarray(label).save(root / "parts_lfw_funneled_gt_images" / f"{name}_{n:04d}.ppm")


def test_partlabels_pads_to_256_and_reads_the_label_colours(tmp_path):
    _write_partlabels(tmp_path)
    splits = load_data("partlabels", tmp_path, seed=0, augment=False)
    assert splits.info == DataInfo("partlabels", (3, 256, 256), 3, "segmentation")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 1, 2)
    for dataset in (splits.train, splits.val, splits.test):
        x, y = dataset[0]
        assert x.shape == (3, 256, 256) and x.dtype == torch.float32
        assert y.shape == (256, 256) and y.dtype == torch.long
        assert -1.0 <= x.min() and x.max() <= 1.0
        # 3 pixels of zeros around the 250x250 image; labels padded with the background
        border = torch.ones(256, 256, dtype=torch.bool)
        border[3:253, 3:253] = False
        assert torch.all(x[:, border] == 0) and torch.all(y[border] == PARTLABELS_BACKGROUND)
        assert torch.all(y[3:253, 3:103] == 0) and torch.all(y[3:253, 103:153] == 1)
        assert torch.all(y[3:253, 153:253] == 2)
        # the image is where its labels are: bright hair band, mid skin, dark background
        assert abs(float(x[:, 3:253, 10:95].mean()) - (230 / 127.5 - 1)) < 0.05
        assert abs(float(x[:, 3:253, 160:250].mean()) - (30 / 127.5 - 1)) < 0.05
    # validation and test never flip
    assert torch.equal(splits.val[0][1], splits.val[0][1])


def test_partlabels_flips_image_and_labels_together_on_train_only(tmp_path):
    _write_partlabels(tmp_path)
    splits = load_data("partlabels", tmp_path, seed=0)
    torch.manual_seed(0)
    flipped = kept = 0
    for _ in range(12):
        x, y = splits.train[1]
        x, y = x[:, 3:253, 3:253], y[3:253, 3:253]  # inside the padding
        assert int((y == 0).sum()) == 250 * 100 and int((y == 2).sum()) == 250 * 100
        assert float(x[:, y == 0].mean()) > 0.7 and float(x[:, y == 2].mean()) < -0.7
        if bool(y[125, 5] == 0):
            kept += 1
        else:
            assert bool(y[125, 245] == 0)
            flipped += 1
    assert flipped and kept
    for _ in range(6):
        assert bool(splits.test[0][1][128, 10] == 0)


def test_partlabels_missing_files_name_what_is_missing_where(tmp_path):
    with pytest.raises(UsageError, match=r"^--data partlabels needs --data-dir DIR"):
        load_data("partlabels", None, 0)
    with pytest.raises(UsageError) as err:
        load_data("partlabels", tmp_path, 0)
    message = str(err.value)
    assert message.startswith(f"--data-dir {tmp_path}: partlabels expects parts_train.txt, parts_validation.txt, "
                              "parts_test.txt, lfw_funneled/<Name>/<Name>_<NNNN>.jpg and "
                              "parts_lfw_funneled_gt_images/<Name>_<NNNN>.ppm there (not found: ")
    assert str(tmp_path / "parts_validation.txt") in message and "parts_lfw_funneled_gt_images.tgz" in message

    _write_partlabels(tmp_path)
    (tmp_path / "lfw_funneled" / "Zoe_Ball" / "Zoe_Ball_0012.jpg").unlink()
    (tmp_path / "parts_lfw_funneled_gt_images" / "Ana_Guevara_0007.ppm").unlink()
    with pytest.raises(UsageError) as err:
        load_data("partlabels", tmp_path, 0)
    assert (f"partlabels is missing 2 of the 12 images and label maps listed in parts_train.txt, "
            f"parts_validation.txt, parts_test.txt: {tmp_path}/lfw_funneled/Zoe_Ball/Zoe_Ball_0012.jpg, "
            f"{tmp_path}/parts_lfw_funneled_gt_images/Ana_Guevara_0007.ppm;") in str(err.value)

    (tmp_path / "parts_test.txt").write_text("Ana_Guevara two\n")
    with pytest.raises(UsageError, match=r"parts_test.txt:1: expected 'Name N', got 'Ana_Guevara two'"):
        load_data("partlabels", tmp_path, 0)


# --- synthetic-seg ------------------------------------------------------------------------------


def test_synthetic_seg_shapes_labels_and_seeds():
    splits = load_data("synthetic-seg", None, seed=0)
    assert splits.info == DataInfo("synthetic-seg", (3, 32, 32), 3, "segmentation")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (512, 128, 128)
    x, y = _all(splits.val)
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (128, 32, 32) and y.dtype == torch.long
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert set(y.unique().tolist()) == {0, 1, 2}
    assert torch.equal(x, _all(load_data("synthetic-seg", None, seed=0).val)[0])
    assert not torch.equal(y, _all(load_data("synthetic-seg", None, seed=1).val)[1])
    assert not torch.equal(y, _all(splits.test)[1])  # the splits differ from one another

    sized = load_data("synthetic-seg", None, seed=0, input_shape=(1, 12, 20), num_classes=6)
    assert sized.info == DataInfo("synthetic-seg", (1, 12, 20), 6, "segmentation")
    x, y = _all(sized.train)
    assert x.shape == (512, 1, 12, 20) and y.shape == (512, 12, 20)
    assert set(y.unique().tolist()) == set(range(6))

    with pytest.raises(UsageError, match=r"--data synthetic-seg: needs a \[channels, height, width\] input shape"):
        load_data("synthetic-seg", None, 0, input_shape=(64,))
    with pytest.raises(UsageError, match=r"--data synthetic-seg: needs at least 2 classes, got 1"):
        load_data("synthetic-seg", None, 0, num_classes=1)


def test_synthetic_seg_pixel_values_do_not_tell_the_class():
    """Without noise, every shape pixel has the same value whatever its class: only the pixel's
    surroundings (the shape it belongs to) can tell a disc from a square."""
    splits = load_data("synthetic-seg", None, seed=0, num_classes=7)
    dataset = splits.train
    dataset.noise = 0.0
    seen = set()
    for i in range(40):
        x, y = dataset[i]
        assert torch.equal(x[:, y > 0], torch.full_like(x[:, y > 0], 0.5))
        assert torch.equal(x[:, y == 0], torch.full_like(x[:, y == 0], -0.5))
        seen |= set(y.unique().tolist())
    assert seen == set(range(7))  # all six kinds of shape occur
    with pytest.raises(UsageError, match=r"at most 7 classes \(background and disc, square, ring, cross, diamond, "
                                         r"triangle\), got 8"):
        load_data("synthetic-seg", None, 0, num_classes=8)


def _fit(net, x, y, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    loader = make_loader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True, seed=0)
    for _ in range(epochs):
        for bx, by in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(bx), by).backward()
            optimizer.step()
    return net


def test_synthetic_seg_needs_context_a_per_pixel_model_cannot_solve_it():
    splits = load_data("synthetic-seg", None, seed=0, input_shape=(3, 24, 24))
    x, y = _all(splits.train)
    vx, vy = _all(splits.val)
    counts = torch.bincount(vy.flatten(), minlength=3).float()
    ceiling = float(counts[0] + counts[1:].max()) / vy.numel()  # background right, every shape the commonest
    nn = torch.nn
    pixel = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 3, 1))
    context = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                            nn.ReLU(), nn.Conv2d(16, 16, 3, padding=4, dilation=4), nn.ReLU(), nn.Conv2d(16, 3, 1))
    accuracy = {}
    for name, net in (("pixel", pixel), ("context", context)):
        _fit(net, x, y, 8)
        with torch.no_grad():
            accuracy[name] = float((net(vx).argmax(1) == vy).float().mean())
    assert accuracy["pixel"] <= ceiling + 0.005, (accuracy, ceiling)
    assert accuracy["context"] >= ceiling + 0.03, (accuracy, ceiling)


# --- fake ---------------------------------------------------------------------------------------


def test_fake_is_small_seeded_and_sized_like_asked():
    splits = load_data("fake", None, seed=0)
    assert splits.info == DataInfo("fake", (3, 32, 32), 10, "classification")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (256, 64, 64)
    x, y = _all(splits.train)
    assert x.shape == (256, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert y.min() >= 0 and y.max() <= 9 and len(y.unique()) == 10
    assert torch.equal(x, _all(load_data("fake", None, seed=0).train)[0])
    assert not torch.equal(x, _all(load_data("fake", None, seed=1).train)[0])

    sized = load_data("fake", None, seed=0, input_shape=(5,), num_classes=3)
    assert sized.info == DataInfo("fake", (5,), 3, "classification")
    assert sized.test[0][0].shape == (5,) and set(_all(sized.test)[1].tolist()) <= {0, 1, 2}
    with pytest.raises(UsageError, match=r"--data fake: needs an input shape of positive sizes, got \[3, 0\]"):
        load_data("fake", None, 0, input_shape=(3, 0))


# --- loaders ------------------------------------------------------------------------------------


def test_make_loader_shuffles_reproducibly():
    dataset = torch.utils.data.TensorDataset(torch.arange(100).float(), torch.arange(100))

    def order(seed, **kw):
        return torch.cat([y for _, y in make_loader(dataset, 16, True, seed, **kw)]).tolist()

    assert order(0) == order(0) != order(1)
    assert sorted(order(0)) == list(range(100)) and order(0) != list(range(100))
    plain = torch.cat([y for _, y in make_loader(dataset, 16, False, 0)]).tolist()
    assert plain == list(range(100))
    sampler = torch.utils.data.SequentialSampler(range(50))
    assert order(0, sampler=sampler) == list(range(50))  # the sampler decides the order


def test_make_loader_with_workers_repeats_augmentation(tmp_path):
    _write_cifar(tmp_path, "cifar10", per_file=4)
    train = load_data("cifar10", tmp_path, seed=0).train

    def epoch(seed):
        return torch.cat([x for x, _ in make_loader(train, 6, True, seed, num_workers=2)])

    assert torch.equal(epoch(5), epoch(5))
    assert not torch.equal(epoch(5), epoch(6))


# --- compatibility ------------------------------------------------------------------------------


def _info(name: str) -> DataInfo:
    return load_data(name, None, 0).info


def test_check_compatible_suggests_overrides_from_parameter_names():
    digits = _info("digits")
    cnf = load_network(FABRICS / "cnf.bsn", {"C": 4})
    with pytest.raises(UsageError) as err:
        check_compatible(digits, cnf)
    assert str(err.value) == ("dataset digits gives [1, 8, 8] inputs and 10 classes, but network cnf takes "
                              "[3, 32, 32]; try -D in_channels=1 -D size=8")
    check_compatible(digits, load_network(FABRICS / "cnf.bsn", {"C": 4, "in_channels": 1, "size": 8}))

    resnet = load_network(FABRICS / "resnet20.bsn", {"classes": 100, "width": 4})
    with pytest.raises(UsageError) as err:
        check_compatible(DataInfo("cifar10", (3, 32, 32), 10, "classification"), resnet)
    assert str(err.value) == ("dataset cifar10 gives [3, 32, 32] inputs and 10 classes, but network resnet20 "
                              "outputs [100]; try -D classes=10")


def test_check_compatible_for_segmentation():
    seg = _info("synthetic-seg")
    check_compatible(seg, load_network(FABRICS / "cnf_seg.bsn", {"C": 4, "W": 2, "size": 32}))

    with pytest.raises(UsageError) as err:
        check_compatible(seg, load_network(FABRICS / "cnf.bsn", {"C": 4, "W": 2}))
    assert str(err.value) == ("dataset synthetic-seg gives [3, 32, 32] inputs and 3 classes per pixel "
                              "(a [3, 32, 32] output), but network cnf outputs [10]; "
                              "try -D segmentation=true -D classes=3")
    check_compatible(seg, load_network(FABRICS / "cnf.bsn", {"C": 4, "W": 2, "segmentation": True, "classes": 3}))

    with pytest.raises(UsageError) as err:
        check_compatible(_info("digits"), load_network(FABRICS / "cnf_seg.bsn", {"C": 4, "W": 2, "size": 32}))
    assert str(err.value) == ("dataset digits gives [1, 8, 8] inputs and 10 classes, but network cnf_seg takes "
                              "[3, 32, 32] and outputs [3, 32, 32]; try -D in_channels=1 -D size=8 "
                              "-D segmentation=false -D classes=10")

    with pytest.raises(UsageError) as err:
        check_compatible(seg, load_network(FABRICS / "resnet20.bsn", {"width": 4}))
    assert str(err.value).endswith("but network resnet20 outputs [10]; try -D classes=3 "
                                   "(not enough: it must also output [3, 32, 32])")


def test_check_compatible_without_parameters_says_what_the_network_must_be():
    text = """
    network tiny() {
        input x : [64]
        output y : [10]
        x -> y : linear(10)
    }
    """
    network = network_from_text(text)
    check_compatible(DataInfo("fake", (64,), 10, "classification"), network)
    with pytest.raises(UsageError) as err:
        check_compatible(_info("digits"), network)
    assert str(err.value) == ("dataset digits gives [1, 8, 8] inputs and 10 classes, but network tiny takes [64]; "
                              "it must take [1, 8, 8]")


@pytest.mark.parametrize("damage", [b"", b"not an image at all", "truncated"])
def test_partlabels_corrupt_image_is_an_error_naming_it(tmp_path, damage):
    from bsnc.errors import BsncError

    _write_partlabels(tmp_path)
    splits = load_data("partlabels", tmp_path, seed=0, augment=False)
    image = next((tmp_path / "lfw_funneled").rglob("*.jpg"))
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 3] if damage == "truncated" else damage)
    datasets = [splits.train, splits.val, splits.test]
    with pytest.raises(BsncError, match=rf"--data partlabels: {image}: cannot read this image"):
        for dataset in datasets:
            for i in range(len(dataset)):
                dataset[i]
