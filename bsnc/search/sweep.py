"""`bsnc sweep`: one `bsnc train` per (budget, seed), plus the full network as a static baseline.

Each run is a separate `bsnc train` process writing its own run directory under ``OUT/runs``,
so runs are isolated (a crash or a bad budget fails one run, not the sweep), resumable (a
finished run is skipped; an interrupted one continues from its checkpoint with ``--resume``)
and can run anywhere the same files are visible: here, ``jobs`` at a time, or as Ray tasks on
a cluster. ``OUT/results.csv`` and ``OUT/results.json`` are rewritten after every finished run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bsnc.errors import BsncError, UsageError, brief, display_path
from bsnc.files import DirectoryLock, atomic_write_text, describe

STATUS_FILE = "sweep-status.json"
# train options the sweep sets itself, per run
RESERVED = ("--budget", "--seed", "--run-dir", "--resume", "--full-network", "--json")
RESULT_FIELDS = ("name", "kind", "budget", "budget_value", "seed", "status", "cost", "cost_name",
                 "within_budget", "val_acc", "test_acc", "epoch", "epochs", "time", "error")


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a sweep."""

    name: str
    seed: int
    budget: str | None  # None: the full-network baseline

    @property
    def kind(self) -> str:
        return "baseline" if self.budget is None else "budget"


@dataclass
class RunResult:
    name: str
    kind: str
    budget: str | None
    seed: int
    status: str  # done | failed
    budget_value: float | None = None
    cost: float | None = None
    cost_name: str | None = None
    within_budget: bool | None = None
    val_acc: float | None = None
    test_acc: float | None = None
    epoch: int | None = None  # the epoch of the shipped model
    epochs: int | None = None
    time: float = 0.0
    error: str | None = None


@dataclass
class SweepSpec:
    file: Path
    defines: Mapping[str, str]
    budgets: Sequence[str]
    seeds: Sequence[int]
    out: Path
    train_args: Sequence[str] = ()
    baseline: bool = True
    jobs: int = 1
    ray_address: str | None = None
    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=dict)


def parse_list(option: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise UsageError(f"{option} {text}: expected a comma-separated list, e.g. 10%,20%,30%")
    if len(set(items)) != len(items):
        raise UsageError(f"{option} {text}: a value is listed twice")
    return items


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for item in parse_list("--seeds", text):
        try:
            seed = int(item)
        except ValueError:
            raise UsageError(f"--seeds {text}: {item!r} is not a whole number") from None
        if not 0 <= seed < 2**32:
            raise UsageError(f"--seeds {text}: {seed} is out of range (0 to 2**32 - 1)")
        seeds.append(seed)
    return seeds


def check_train_args(args: Sequence[str]) -> None:
    for arg in args:
        option = arg.split("=", 1)[0]
        if option in RESERVED:
            raise UsageError(f"{option}: the sweep sets it for each run; use --budget and --seeds of "
                             "bsnc sweep, and --out for where runs go")


def _slug(budget: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else {"%": "pct"}.get(c, "_") for c in budget)


def plan(budgets: Sequence[str], seeds: Sequence[int], baseline: bool) -> list[PlannedRun]:
    runs = [PlannedRun(f"budget-{_slug(b)}_seed-{s}", s, b) for b in budgets for s in seeds]
    if baseline:
        runs += [PlannedRun(f"baseline_seed-{s}", s, None) for s in seeds]
    return runs


def command(spec: SweepSpec, run: PlannedRun, run_dir: Path) -> list[str]:
    """The `bsnc train` command line of one run (``--resume`` when it was interrupted)."""
    cmd = [spec.python, "-m", "bsnc", "train", str(spec.file)]
    for key, value in spec.defines.items():
        cmd += ["-D", f"{key}={value}"]
    cmd += list(spec.train_args)
    cmd += ["--seed", str(run.seed), "--run-dir", str(run_dir)]
    cmd += ["--full-network"] if run.budget is None else ["--budget", run.budget]
    if (run_dir / "ckpt.pt").exists():
        cmd.append("--resume")
    return cmd


def _threads(jobs: int) -> str:
    return str(max(1, (os.cpu_count() or 1) // max(1, jobs)))


_CHILDREN: set[subprocess.Popen] = set()  # the trainings this process is running (not on Ray)
_STOP = threading.Event()  # set on Ctrl-C: no further training starts
_STARTING = threading.Lock()  # a training starts, or the sweep stops, not both at once


def execute(cmd: Sequence[str], log_path: str, env: Mapping[str, str]) -> tuple[int, float, str]:
    """Run one training command, its output appended to ``log_path``: (exit status, seconds,
    the last line it printed on stderr). Runs on this machine or inside a Ray task."""
    start = time.perf_counter()
    with open(log_path, "ab", buffering=0) as log:  # unbuffered: a failed write leaves nothing for close
        _write_log(log, log_path, f"$ {' '.join(cmd)}\n".encode())
        with _STARTING:
            if _STOP.is_set():  # the sweep was interrupted: start nothing more
                return 130, 0.0, "interrupted"
            child = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.PIPE, env={**os.environ, **env})
            _CHILDREN.add(child)
        with child:
            try:
                _, stderr = child.communicate()
            finally:
                _CHILDREN.discard(child)
        _write_log(log, log_path, stderr)
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return child.returncode, time.perf_counter() - start, lines[-1] if lines else ""


def _write_log(log: Any, log_path: str, data: bytes) -> None:
    """Append to a run's log, naming the log when that fails (a full disk): the OSError of a
    write names no file, and read as a failure to print the output."""
    try:
        log.write(data)
    except OSError as exc:
        raise BsncError(f"{log_path}: cannot write the run's log ({describe(exc)})") from None


def _interrupt_children() -> None:
    """Pass Ctrl-C on to the running trainings (a terminal sends it to them too; `kill -INT` of
    the sweep alone does not): each stops with its last checkpoint whole, for the next sweep."""
    import signal

    with _STARTING:
        _STOP.set()
        children = list(_CHILDREN)
    for child in children:
        if child.poll() is None:
            try:
                child.send_signal(signal.SIGINT)
            except OSError:
                pass


def summarise(run: PlannedRun, run_dir: Path, status: str, seconds: float, error: str | None) -> RunResult:
    """The shipped model's figures, read back from the run directory."""
    result = RunResult(run.name, run.kind, run.budget, run.seed, status, time=round(seconds, 3), error=error)
    records = read_metrics(run_dir)
    if not records:
        return result
    point = _shipped_point(run_dir)
    if point is not None:  # what best.pt holds: the most accurate point of the front within budget
        result.cost, result.within_budget = point.cost, point.within_budget
        result.val_acc, result.test_acc, result.epoch = point.val_acc, point.test_acc, point.epoch
    else:
        shipped = shipped_record(records)
        result.cost = shipped.get("deterministic_cost")
        result.within_budget = shipped.get("within_budget")
        result.val_acc = shipped.get("val_acc")
        result.test_acc = shipped.get("test_acc")
        result.epoch = shipped.get("epoch")
    result.epochs = records[-1].get("epoch")
    config = read_config(run_dir)
    result.cost_name = config.get("config", {}).get("cost")
    result.budget_value = records[-1].get("budget")
    if result.budget_value is None and run.budget is not None:
        result.budget_value = _checkpoint_budget(run_dir)
    return result


def _checkpoint_budget(run_dir: Path) -> float | None:
    from bsnc.search.checkpoint import load_checkpoint

    path = run_dir / "ckpt.pt"
    value = load_checkpoint(path).get("budget") if path.is_file() else None
    return float(value) if value is not None else None


def _shipped_point(run_dir: Path):
    """The Pareto point `bsnc export` ships by default, from the run's pareto.json (None when the
    run has no point within budget, or no front: a static network)."""
    from bsnc.search.checkpoint import read_json
    from bsnc.search.selection import ParetoFront

    path = run_dir / "pareto.json"
    if not path.is_file():
        return None
    return ParetoFront.from_json(read_json(path), display_path(path)).best()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    from bsnc.search.checkpoint import read_metrics

    return read_metrics(run_dir)


def read_config(run_dir: Path) -> dict[str, Any]:
    from bsnc.search.checkpoint import read_run_config

    return read_run_config(run_dir)


def shipped_record(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Without a Pareto front: the most accurate epoch within budget, else the last epoch."""
    within = [r for r in records if r.get("within_budget")]
    if not within:
        return records[-1]
    return max(within, key=lambda r: (r.get("val_acc", -1.0), -r.get("epoch", 0)))


# results.json: each field of a row and what it may hold (None: not measured)
_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "budget": (str, type(None)), "seed": (int,), "status": (str,), "budget_value": (int, float, type(None)),
    "cost": (int, float, type(None)), "cost_name": (str, type(None)), "within_budget": (bool, type(None)),
    "val_acc": (int, float, type(None)), "test_acc": (int, float, type(None)), "epoch": (int, type(None)),
    "epochs": (int, type(None)), "time": (int, float), "error": (str, type(None)),
}


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"a run is {brief(row)}, expected an object"
    name = row.get("name")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        return f"a run's name must be one directory name of runs/, got {brief(name)}"
    if row.get("kind") not in ("budget", "baseline"):
        return f"run {name}: 'kind' is {brief(row.get('kind'))}, expected \"budget\" or \"baseline\""
    for key, kinds in _ROW_TYPES.items():
        value = row.get(key)
        wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if key in row and (wrong or (isinstance(value, float) and not math.isfinite(value))):
            return f"run {name}: {key!r} is {brief(value)}"
    return None


def read_results(out: Path) -> list[dict[str, Any]]:
    """The rows of a sweep's results.json, each checked (a BsncError naming the file)."""
    from bsnc.search.checkpoint import read_json

    path = out / "results.json"
    data = read_json(path)
    rows = data.get("runs") if isinstance(data, dict) else None
    problem = None if isinstance(rows, list) else 'expected {"runs": [...]}'
    problem = problem or next((p for p in map(_row_problem, rows) if p is not None), None)
    if problem is not None:
        raise BsncError(f"{display_path(path)}: damaged sweep results: {problem}")
    return rows


def write_table(out: Path, results: Sequence[RunResult]) -> None:
    rows = [asdict(r) for r in sorted(results, key=_order)]
    atomic_write_text(out / "results.json", json.dumps({"runs": rows}, indent=2) + "\n", special=False)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in RESULT_FIELDS})
    atomic_write_text(out / "results.csv", buffer.getvalue(), special=False)


def _order(result: RunResult) -> tuple:
    value = result.budget_value if result.budget_value is not None else math.inf
    return (result.kind == "baseline", value, result.budget or "", result.seed)


def _status(run_dir: Path) -> dict[str, Any] | None:
    """A run's sweep-status.json (None when there is none: the run has not finished)."""
    from bsnc.search.checkpoint import read_json

    path = run_dir / STATUS_FILE
    if not path.exists() and not path.is_symlink():
        return None
    data = read_json(path)
    problem = None
    if not isinstance(data, dict):
        problem = f"expected an object, got a {type(data).__name__}"
    elif data.get("status") not in ("done", "failed"):
        problem = f"'status' is {data.get('status')!r}, expected \"done\" or \"failed\""
    elif not _seconds(data.get("time", 0.0)):
        problem = f"'time' is {data.get('time')!r}, expected a number of seconds"
    if problem is not None:
        raise BsncError(f"{display_path(path)}: damaged: {problem}; remove it to run {run_dir.name} again")
    return data


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def run_sweep(spec: SweepSpec, on_result: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Run every planned run not already finished; return the results of all of them."""
    if spec.jobs < 1:
        raise UsageError(f"--jobs {spec.jobs}: expected at least 1")
    check_train_args(spec.train_args)
    runs_root = spec.out / "runs"
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {spec.out}: cannot write there ({exc.strerror})") from None
    # two sweeps of one --out would train the same runs at once and rewrite each other's tables
    with DirectoryLock(spec.out, f"--out {spec.out}"):
        return _run_sweep(spec, runs_root, on_result)


def _run_sweep(spec: SweepSpec, runs_root: Path,
               on_result: Callable[[RunResult], None] | None) -> list[RunResult]:
    _STOP.clear()
    results: dict[str, RunResult] = {}
    todo: list[PlannedRun] = []
    for run in plan(spec.budgets, spec.seeds, spec.baseline):
        status = _status(runs_root / run.name)
        if status is not None and status.get("status") == "done":
            results[run.name] = summarise(run, runs_root / run.name, "done", status.get("time", 0.0), None)
        else:
            todo.append(run)
    write_table(spec.out, list(results.values()))

    def finished(run: PlannedRun, code: int, seconds: float, last_line: str) -> None:
        run_dir = runs_root / run.name
        status = "done" if code == 0 else "failed"
        error = None if code == 0 else f"exit {code}: {last_line}" if last_line else f"exit {code}"
        result = summarise(run, run_dir, status, seconds, error)
        if run_dir.is_dir():
            atomic_write_text(run_dir / STATUS_FILE, json.dumps({"status": status, "time": seconds,
                                                                   "exit": code}) + "\n", special=False)
        results[run.name] = result
        write_table(spec.out, list(results.values()))
        if on_result is not None:
            on_result(result)

    env = {**spec.env, "OMP_NUM_THREADS": _threads(spec.jobs)}
    jobs = [(run, command(spec, run, runs_root / run.name), str(runs_root / f"{run.name}.log")) for run in todo]
    if spec.ray_address is not None:
        _run_on_ray(spec.ray_address, jobs, env, finished)
    else:
        pool = ThreadPoolExecutor(max_workers=spec.jobs)
        try:
            futures = {pool.submit(execute, cmd, log, env): run for run, cmd, log in jobs}
            for future in as_completed(futures):
                finished(futures[future], *future.result())
        except BaseException:
            # Ctrl-C (or a failure): start no further run. The running ones got the terminal's
            # SIGINT too and stop at their last checkpoint; the next `bsnc sweep` resumes them.
            pool.shutdown(wait=False, cancel_futures=True)
            _interrupt_children()
            pool.shutdown(wait=True)
            raise
        pool.shutdown(wait=True)
    return sorted(results.values(), key=_order)


def _run_on_ray(address: str, jobs: Sequence[tuple[PlannedRun, list[str], str]], env: Mapping[str, str],
                finished: Callable[[PlannedRun, int, float, str], None]) -> None:
    """Each run a Ray task asking for one CPU (and one GPU when the runs train on CUDA)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray: Ray is not installed; install it with: pip install 'bsnc[ray]'") from None
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--ray {address}: cannot connect to a Ray cluster there ({exc})") from None
    try:
        cuda = any("cuda" in arg for _, cmd, _ in jobs for arg in cmd)
        task = ray.remote(num_cpus=1, num_gpus=1 if cuda else 0)(execute)
        pending = {task.remote(cmd, log, {**env, "OMP_NUM_THREADS": "1"}): run for run, cmd, log in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                finished(pending.pop(ref), *ray.get(ref))
    finally:
        ray.shutdown()
