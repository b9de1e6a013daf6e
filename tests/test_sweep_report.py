"""bsnc sweep, bsnc report, percentage budgets and the CSV / TensorBoard loggers."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.costs.analytic import FlopsCost
from bsnc.export.report import pareto_front
from bsnc.lang.frontend import load_network
from bsnc.search.checkpoint import load_checkpoint
from tests.test_train import TINY  # four stochastic edges, five in all

TRAIN = ["--data", "fake", "--epochs", "1", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.bsn"
    path.write_text(TINY)
    return path


def _sweep(tiny: Path, out: Path, *extra: str, budgets: str = "100%,150%"):
    # budgets at or above the full cost: every run ends within budget, whatever one epoch of
    # search does (the search itself is tested in test_search_budget.py)
    return CliRunner().invoke(main, ["sweep", str(tiny), "--budget", budgets, "--seeds", "0", "--out", str(out),
                                     "--jobs", "2", *extra, *TRAIN])


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def test_sweep_writes_the_table_resumes_and_reports(tiny, tmp_path):
    out = tmp_path / "sweep"
    result = _sweep(tiny, out)
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert set(rows) == {"budget-100pct_seed-0", "budget-150pct_seed-0", "baseline_seed-0"}
    full = FlopsCost(load_network(tiny)).full()
    for name, share in (("budget-100pct_seed-0", 1.0), ("budget-150pct_seed-0", 1.5)):
        row = rows[name]
        assert row["status"] == "done" and row["kind"] == "budget" and row["cost_name"] == "flops"
        assert float(row["budget_value"]) == pytest.approx(share * full)
        assert row["epochs"] == "1" and float(row["time"]) > 0
        assert 0 <= float(row["test_acc"]) <= 1 and 0 <= float(row["val_acc"]) <= 1
        # the table's figures are those of the shipped model, best.pt
        best = load_checkpoint(out / "runs" / name / "best.pt")["history"][-1]
        assert float(row["cost"]) == pytest.approx(best["deterministic_cost"]) and row["within_budget"] == "True"
        assert float(row["val_acc"]) == pytest.approx(best["val_acc"]) and int(row["epoch"]) == best["epoch"]
    baseline = rows["baseline_seed-0"]
    assert baseline["kind"] == "baseline" and baseline["budget"] == ""
    assert float(baseline["cost"]) == full  # every edge on: the full network's cost
    assert json.loads((out / "results.json").read_text())["runs"][0]["name"] == "budget-100pct_seed-0"

    # a finished run is not run again; an interrupted one resumes from its checkpoint
    logs = {name: (out / "runs" / f"{name}.log").read_text() for name in rows}
    (out / "runs" / "budget-150pct_seed-0" / "sweep-status.json").unlink()
    again = _sweep(tiny, out)
    assert again.exit_code == 0, again.output
    assert (out / "runs" / "budget-100pct_seed-0.log").read_text() == logs["budget-100pct_seed-0"]
    resumed = (out / "runs" / "budget-150pct_seed-0.log").read_text()
    assert resumed.startswith(logs["budget-150pct_seed-0"])
    assert "--resume" in resumed[len(logs["budget-150pct_seed-0"]):]

    report_dir = tmp_path / "report"
    made = CliRunner().invoke(main, ["report", str(out), "-o", str(report_dir)])
    assert made.exit_code == 0, made.output
    page = (report_dir / "report.html").read_text()
    figures = sorted(report_dir.rglob("*.png"))
    names = {p.relative_to(report_dir).as_posix() for p in figures}
    assert "sweep/pareto.png" in names
    for run in rows:
        assert f"sweep/{run}/loss_accuracy.png" in names and f"sweep/{run}/cost.png" in names
    for figure in ("entropy", "gammas", "architecture"):
        assert f"sweep/budget-100pct_seed-0/{figure}.png" in names
    for png in figures:
        assert png.stat().st_size > 2000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = png.with_suffix(".svg")
        assert svg.stat().st_size > 2000 and b"<svg" in svg.read_bytes()[:1000]
        rel = png.relative_to(report_dir).as_posix()
        assert f'href="{rel}"' in page and f'href="{rel[:-4]}.svg"' in page  # every figure referenced
    assert page.count('src="data:image/png;base64,') == len(figures)  # inlined: no file needed to view it
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_a_failed_run_is_reported_and_does_not_stop_the_others(tiny, tmp_path):
    out = tmp_path / "sweep"
    # 30% of tiny's cost is below its cheapest architecture that reaches the output (72%): that
    # run ends with no usable model (exit 3); a run that cannot read its checkpoint fails too
    broken = out / "runs" / "budget-150pct_seed-0"
    broken.mkdir(parents=True)
    (broken / "ckpt.pt").write_bytes(b"not a checkpoint")
    result = _sweep(tiny, out, "--no-baseline", budgets="30%,100%,150%")
    assert result.exit_code == 1
    assert "error: 2 of 3 runs failed: budget-30pct_seed-0, budget-150pct_seed-0" in result.output  # as every error
    rows = _rows(out)
    assert rows["budget-30pct_seed-0"]["status"] == "failed"
    assert rows["budget-30pct_seed-0"]["error"].startswith("exit 3: error: no epoch of this run chose an architecture")
    assert rows["budget-150pct_seed-0"]["status"] == "failed" and "exit 1" in rows["budget-150pct_seed-0"]["error"]
    assert rows["budget-100pct_seed-0"]["status"] == "done" and rows["budget-100pct_seed-0"]["test_acc"]


@pytest.mark.parametrize("args, message", [
    (["--budget", "10%,10%"], "listed twice"),
    (["--budget", "10%,abc"], "--budget abc"),
    (["--budget", "0%"], "above 0"),
    (["--budget", "10%", "--seeds", "one"], "not a whole number"),
    (["--budget", "10%", "--seed", "3"], "--seed: the sweep sets it"),
    (["--budget", "10%", "--epochs", "zero"], "train option"),
])
def test_sweep_refuses_bad_options_before_any_run(tiny, tmp_path, args, message):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", str(tiny), "--out", str(out), *args, "--data", "fake"])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (out / "runs").exists()


def test_percentage_budget_is_a_share_of_the_full_cost(tiny, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tiny), "--budget", "150%", "--run-dir", str(run), "--quiet",
                                       *TRAIN])
    assert result.exit_code == 0, result.output
    full = FlopsCost(load_network(tiny)).full()
    assert load_checkpoint(run / "ckpt.pt")["budget"] == pytest.approx(1.5 * full)
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["budget"] == pytest.approx(1.5 * full)


def test_loggers_write_csv_and_tensorboard_events(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tiny), "--budget", "150%", "--run-dir", str(run), "--quiet",
                                       "--logger", "csv,tensorboard", *TRAIN[:2], "--epochs", "2",
                                       *TRAIN[4:]])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["val_acc"]) for r in rows] == [r["val_acc"] for r in records]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"histograms": 0})  # 0: keep every event
    events.Reload()
    tags = events.Tags()
    assert {"train_loss", "val_acc", "deterministic_cost", "entropy"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("val_acc")] == [1, 2]
    assert [e.value for e in events.Scalars("val_acc")] == pytest.approx([r["val_acc"] for r in records])
    assert all(len(r["gamma"]) == 4 for r in records)  # the four stochastic edges of tiny
    assert "gamma" in tags["histograms"] and len(events.Histograms("gamma")) == 2


def test_unknown_logger_is_refused(tiny, tmp_path):
    result = CliRunner().invoke(main, ["train", str(tiny), "--budget", "50%", "--logger", "wandb",
                                       "--run-dir", str(tmp_path / "r"), *TRAIN])
    assert result.exit_code == 1 and "--logger wandb: unknown logger" in result.output


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(10, 80.0), (5, 70.0), (7, 69.0), (12, 79.0), (3, 50.0), (10, 81.0)]
    assert pareto_front(points) == [(3, 50.0), (5, 70.0), (10, 81.0)]
    assert pareto_front([]) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_runs_on_a_local_ray_cluster(tiny, tmp_path):
    ray_cli = Path(sys.executable).with_name("ray")
    assert ray_cli.exists(), "the test extra installs ray"
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True, env=env, timeout=180)
    try:
        out = tmp_path / "sweep"
        cmd = [sys.executable, "-m", "bsnc", "sweep", str(tiny), "--budget", "100%", "--seeds", "0,1",
               "--no-baseline", "--out", str(out), "--ray", f"127.0.0.1:{port}", *TRAIN]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = _rows(out)
        assert {r["status"] for r in rows.values()} == {"done"} and set(rows) == {
            "budget-100pct_seed-0", "budget-100pct_seed-1"}
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_a_full_network_baseline_exports_and_draws_as_what_it_trained(tiny, tmp_path):
    run = tmp_path / "base"
    trained = CliRunner().invoke(main, ["train", str(tiny), "--full-network", "--run-dir", str(run), *TRAIN])
    assert trained.exit_code == 0, trained.output
    assert "warning" not in trained.output  # a static network: no budget to warn about
    exported = CliRunner().invoke(main, ["export", str(run), "--prune", "-o", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    network = load_network(tmp_path / "out" / "tiny_pruned.bsn")
    assert len(network.edges) == 5 and not network.stochastic_edges  # every edge, all fixed
    header = (tmp_path / "out" / "tiny_pruned.bsn").read_text()
    assert "(every edge: the run trained the full network (--full-network))" in header and "no budget" in header
    drawn = CliRunner().invoke(main, ["draw", str(tiny), "--probs", str(run), "-o", str(tmp_path / "d")])
    assert drawn.exit_code == 1 and "trained as the full network" in drawn.output


def test_export_never_swaps_away_a_file_of_the_users(tiny, tmp_path):
    import bsnc

    run = tmp_path / "base"
    assert CliRunner().invoke(main, ["train", str(tiny), "--full-network", "--run-dir", str(run), *TRAIN]).exit_code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.bsn").write_text("network keep() {}\n")
    forced = CliRunner().invoke(main, ["export", str(run), "--prune", "-o", str(mine), "--force"])
    assert forced.exit_code == 1 and "precious.bsn" in forced.output
    with pytest.raises(Exception, match="precious.bsn"):
        bsnc.export(run, mine)
    assert (mine / "precious.bsn").read_text() == "network keep() {}\n" and len(list(mine.iterdir())) == 1


# one epoch record as train writes it, and a finished run of a sweep made by hand (no training)
RECORD = {"epoch": 1, "phase": "search", "train_loss": 1.0, "train_acc": 0.5, "mean_sampled_cost": 10.0,
          "deterministic_cost": 10.0, "consistent": True, "within_budget": True, "entropy": 0.5, "edges_kept": 3,
          "val_acc": 0.5, "val_loss": 1.0, "test_acc": 0.5, "lr": 0.1, "time": 1.0, "gamma": {"a->b": 0.9},
          "budget": 20.0}
POINT = {"epoch": 1, "val_acc": 0.5, "cost": 10.0, "within_budget": True, "test_acc": 0.5,
         "file": "pareto/epoch-001.pt"}


def _finished_run(out: Path, name: str = "budget-100pct_seed-0") -> Path:
    run = out / "runs" / name
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps(RECORD) + "\n")
    (run / "pareto.json").write_text(json.dumps([POINT]))
    (run / "config.json").write_text(json.dumps({"config": {"cost": "flops"}, "network": "tiny"}))
    (run / "sweep-status.json").write_text(json.dumps({"status": "done", "time": 1.0, "exit": 0}))
    return run


@pytest.mark.parametrize("file, text, message", [
    ("pareto.json", json.dumps([POINT])[:20], "pareto.json: damaged: not JSON"),
    ("pareto.json", '[{"epoch": "x"}]', "pareto.json: damaged Pareto front: point 1: 'epoch' is 'x'"),
    ("pareto.json", '"abc"', "pareto.json: damaged Pareto front: expected a list of points, got a str"),
    ("pareto.json", '[{"epoch": 1, "val_acc": 0.5, "cost": null, "within_budget": true}]', "'cost' is None"),
    ("sweep-status.json", "[]", "sweep-status.json: damaged: expected an object, got a list"),
    ("sweep-status.json", '{"status": 5}', "sweep-status.json: damaged: 'status' is 5"),
    ("metrics.jsonl", '{"epoch": "x", "val_acc": [1], "gamma": 5}', "metrics.jsonl:1: damaged epoch record"),
    ("config.json", '{"config": [], "source_hash": 5}', "config.json: damaged run settings"),
])
def test_a_sweep_rerun_names_a_damaged_file_of_a_finished_run(tiny, tmp_path, file, text, message):
    out = tmp_path / "sweep"
    run = _finished_run(out)
    (run / file).write_text(text)
    result = _sweep(tiny, out, "--no-baseline", budgets="100%")
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert result.stderr.startswith("error: " + str(run)) and "Traceback" not in result.output
    assert not (out / "results.json").exists() and not (out / "runs" / "budget-100pct_seed-0.log").exists()


@pytest.mark.parametrize("results, message", [
    ({"runs": [5]}, "a run is 5, expected an object"),
    ({"runs": [{"budget": "x"}]}, "a run's name must be one directory name of runs/, got None"),
    ({"runs": [{"name": "budget-100pct_seed-0", "kind": "budget", "status": "done", "cost": "x"}]},
     "run budget-100pct_seed-0: 'cost' is 'x'"),
    ({"runs": {}}, 'expected {"runs": [...]}'),
])
def test_report_names_damaged_sweep_results(tmp_path, results, message):
    out = tmp_path / "sweep"
    _finished_run(out)
    (out / "results.json").write_text(json.dumps(results))
    result = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "report")])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {out / 'results.json'}: damaged sweep results: {message}"), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("file, text, message", [
    ("config.json", '{"config": [], "source_hash": 5}', "config.json: damaged run settings: its 'source_hash'"),
    ("config.json", '{"config": {"cost": 5}}', "config.json: damaged run settings: setting 'cost' is 5"),
    ("config.json", "[1]", "config.json: damaged run settings: expected an object, got a list"),
    ("metrics.jsonl", json.dumps(RECORD) + '\n{"epoch": "x", "val_acc": [1], "gamma": 5}\n',
     "metrics.jsonl:2: damaged epoch record: 'epoch' is 'x'"),
    ("metrics.jsonl", json.dumps({**RECORD, "val_acc": [1]}), "metrics.jsonl:1: damaged epoch record: 'val_acc'"),
    ("metrics.jsonl", json.dumps({**RECORD, "gamma": 5}), "'gamma' is not a map of edge names"),
    ("metrics.jsonl", "[1]", "metrics.jsonl:1: damaged epoch record: expected an object"),
])
def test_report_names_a_damaged_file_of_a_run(tmp_path, file, text, message):
    run = _finished_run(tmp_path / "sweep")
    (run / file).write_text(text)
    result = CliRunner().invoke(main, ["report", str(run), "-o", str(tmp_path / "report")])
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert result.stderr.startswith(f"error: {run}") and "Traceback" not in result.output


def test_report_follows_the_latest_link_of_a_runs_directory(tmp_path, monkeypatch):
    # `bsnc report runs/cnf -o runs/cnf/report`, as its --help shows: the newest numbered run
    _finished_run(tmp_path, "0")
    runs = tmp_path / "runs"
    (runs / "latest").symlink_to("0", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", "runs", "-o", "runs/report"])
    assert result.exit_code == 0, result.output
    assert (runs / "report" / "runs" / "loss_accuracy.png").is_file()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_run_log_that_cannot_be_written_is_named():
    """On a full disk the log's write failed with an OSError naming no file, which the CLI took
    for its own output: "cannot write the output"."""
    from bsnc.errors import BsncError
    from bsnc.search.sweep import execute

    with pytest.raises(BsncError, match=r"^/dev/full: cannot write the run's log \(no space left on the device\)"):
        execute([sys.executable, "-c", "pass"], "/dev/full", {})
