"""Segmentation reports mean IoU next to pixel accuracy."""

from __future__ import annotations

import json

import pytest
import torch

from bsnc.search.train import TrainConfig, intersection_union, mean_iou, train
from tests.helpers import FABRICS


def test_intersection_union_and_mean_iou_by_hand():
    target = torch.tensor([[0, 0, 1], [1, 2, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    inter, union = intersection_union(pred, target, 4)
    # class 0: both at (0,0); either at (0,0), (0,1), (1,2) -> 1/3; class 1: 2/3; class 2: 1/2; class 3 absent
    assert inter.tolist() == [1, 2, 1, 0] and union.tolist() == [3, 3, 2, 0]
    assert mean_iou(inter, union) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert mean_iou(*intersection_union(target, target, 3)) == 1.0


def test_a_segmentation_run_records_and_prints_mean_iou(tmp_path, capsys):
    run = tmp_path / "run"
    config = TrainConfig(file=str(FABRICS / "cnf.bsn"), data="synthetic-seg", budget="1M", epochs=1, batch_size=32,
                         device="cpu", run_dir=str(run), progress=False,
                         defines={"W": "2", "C": "4", "size": "8", "classes": "3", "segmentation": "true"})
    result = train(config)
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < row["val_miou"] <= 1 and 0 < row["test_miou"] <= 1 and 0 < row["val_acc"] <= 1
    assert result.history[-1].test_miou == row["test_miou"]
    assert "val mIoU" in capsys.readouterr().out
