"""Bring your own data: an image folder, a `package.module:function`, a `bsnc.datasets` entry
point, and Datasets given to the Python API."""

from __future__ import annotations

import json
import textwrap
from importlib import metadata

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bsnc.cli import main
from bsnc.errors import UsageError
from bsnc.search import userdata
from bsnc.search.data import load_data
from tests.test_train import TINY


def _images(root, classes=("cat", "dog"), per_class=5, size=(12, 10), mode="RGB"):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((size[1], size[0], 3), 40 * k + i, dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i}.png")


def test_imagefolder_splits_one_folder_80_10_10_and_resizes_to_the_network(tmp_path):
    _images(tmp_path / "pics")
    splits = load_data("imagefolder", tmp_path / "pics", seed=0, input_shape=(3, 8, 8), augment=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 1, 1)
    assert splits.info.input_shape == (3, 8, 8) and splits.info.num_classes == 2
    x, y = splits.val[0]
    assert x.shape == (3, 8, 8) and -1 <= float(x.min()) <= float(x.max()) <= 1 and y in (0, 1)
    again = load_data("imagefolder", tmp_path / "pics", seed=0, input_shape=(3, 8, 8), augment=False)
    assert again.val.indices == splits.val.indices
    grey = load_data("imagefolder", tmp_path / "pics", seed=0, input_shape=(1, 4, 4))
    assert grey.train[0][0].shape == (1, 4, 4)


def test_imagefolder_uses_train_val_test_folders_when_present(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        _images(tmp_path / split, per_class=n)
    splits = load_data("imagefolder", tmp_path, seed=0, input_shape=(3, 8, 8))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 4, 2)
    (tmp_path / "test" / "dog").rename(tmp_path / "test" / "bird")
    with pytest.raises(UsageError, match="hold different class folders"):
        load_data("imagefolder", tmp_path, seed=0, input_shape=(3, 8, 8))


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UsageError, match="--data imagefolder needs --data-dir DIR"):
        load_data("imagefolder", None, 0, input_shape=(3, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not an image folder"):
        load_data("imagefolder", tmp_path / "empty", 0, input_shape=(3, 8, 8))
    _images(tmp_path / "few", per_class=2)
    with pytest.raises(UsageError, match="4 images are too few"):
        load_data("imagefolder", tmp_path / "few", 0, input_shape=(3, 8, 8))
    with pytest.raises(UsageError, match=r"takes \[4, 8, 8\]; images need a \[1 or 3, H, W\]"):
        load_data("imagefolder", tmp_path / "few", 0, input_shape=(4, 8, 8))


def test_imagefolder_trains_and_checks_the_classes_against_the_network(tmp_path):
    _images(tmp_path / "pics", per_class=10, size=(20, 20))
    tiny = tmp_path / "tiny.bsn"
    tiny.write_text(TINY)
    base = ["train", str(tiny), "--data", "imagefolder", "--data-dir", str(tmp_path / "pics"), "--budget", "20k",
            "--epochs", "1", "--device", "cpu", "-q"]
    result = CliRunner().invoke(main, base + ["--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and "dataset imagefolder gives [3, 8, 8] inputs and 2 classes" in result.output
    assert "-D classes=2" in result.output
    result = CliRunner().invoke(main, base + ["-D", "classes=2", "--run-dir", str(tmp_path / "r2"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs"] == 1


MODULE = """
import torch
from torch.utils.data import TensorDataset

def make(seed, num_classes):
    g = torch.Generator().manual_seed(seed)
    def part(n):
        return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(num_classes, (n,), generator=g))
    return part(64), part(16), part(16)

def broken():
    raise RuntimeError("no data here")

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mydata"


def test_data_from_a_function_and_from_an_entry_point(user_module, tmp_path, monkeypatch):
    splits = load_data("mydata:make", None, seed=1, input_shape=(3, 8, 8), num_classes=10)
    assert len(splits.train) == 64 and splits.info.input_shape == (3, 8, 8) and splits.info.num_classes == 10
    assert splits.info.task == "classification"
    with pytest.raises(UsageError, match="--data mydata:broken: the function raised RuntimeError: no data here"):
        load_data("mydata:broken", None, 0)
    with pytest.raises(UsageError, match="'NOT_CALLABLE' is not callable"):
        load_data("mydata:NOT_CALLABLE", None, 0)
    with pytest.raises(UsageError, match="cannot import module 'nowhere'"):
        load_data("nowhere:make", None, 0)

    entry = metadata.EntryPoint(name="mine", value="mydata:make", group="bsnc.datasets")
    monkeypatch.setattr(userdata, "_entry_points", lambda: [entry])
    assert len(load_data("mine", None, 0, num_classes=10).val) == 16
    tiny = tmp_path / "tiny.bsn"
    tiny.write_text(TINY)
    result = CliRunner().invoke(main, ["train", str(tiny), "--data", "mine", "--budget", "20k", "--epochs", "1",
                                       "--device", "cpu", "--run-dir", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output


def test_user_datasets_must_give_tensor_pairs():
    class Pictures(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return Image.new("RGB", (8, 8)), 0

    with pytest.raises(UsageError, match="inputs are Images; expected tensors"):
        userdata.first_example("mine", "train", Pictures())
    with pytest.raises(UsageError, match="expected three datasets"):
        userdata.triple("mine", [1, 2])


def test_an_unreadable_image_is_named_before_training(tmp_path):
    _images(tmp_path / "pics", per_class=10, size=(20, 20))
    (tmp_path / "pics" / "dog" / "3.png").write_bytes(b"x")  # no image at all
    tiny = tmp_path / "tiny.bsn"
    tiny.write_text(TINY)
    run = tmp_path / "r"
    result = CliRunner().invoke(main, ["train", str(tiny), "-D", "classes=2", "--data", "imagefolder", "--data-dir",
                                       str(tmp_path / "pics"), "--budget", "20k", "--epochs", "1", "--device", "cpu",
                                       "-q", "--run-dir", str(run)])
    assert result.exit_code != 0
    assert "dog/3.png: cannot read it as an image (not an image format that Pillow reads)" in result.stderr
    assert "cannot write" not in result.output and "Traceback" not in result.output
    assert not run.exists()  # found before the run directory was made


def test_an_image_damaged_past_its_header_is_named_when_loaded(tmp_path):
    _images(tmp_path / "pics", per_class=5, size=(20, 20))
    damaged = tmp_path / "pics" / "cat" / "0.png"
    damaged.write_bytes(damaged.read_bytes()[:45])  # the header survives, the pixels do not
    splits = load_data("imagefolder", tmp_path / "pics", seed=0, input_shape=(3, 8, 8), augment=False)
    with pytest.raises(UsageError, match=r"cat/0.png: cannot read it as an image \("):
        for dataset in (splits.train, splits.val, splits.test):
            for i in range(len(dataset)):
                dataset[i]
