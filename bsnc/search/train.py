"""Budgeted training (paper §3.3, DESIGN §6): weights by back-propagation of the prediction loss,
edge probabilities by REINFORCE on D = loss + lambda * penalty(C(H) / budget - 1), with the
batch-mean baseline (the global batch under torchrun).

One run directory holds config.json, metrics.jsonl, ckpt.pt (latest) and best.pt (best
validation accuracy among epochs whose deterministic cost is within budget)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bsnc import numeric, primitives
from bsnc.codegen.architecture import full_network, kept_edges, prune
from bsnc.codegen.layout import channels_last_by_default, memory_format_for
from bsnc.codegen.loader import compile_network
from bsnc.codegen.runtime import Architecture, dense_threshold
from bsnc.costs.base import Cost
from bsnc.costs.cheapest import cheapest_consistent
from bsnc.costs.largest import largest_architecture
from bsnc.costs.memory import check_fits
from bsnc.costs.registry import parse_cost
from bsnc.errors import BsncError, Interrupted, UsageError
from bsnc.files import DirectoryLock, atomic_write_text, kind_of, remove_leftovers
from bsnc.ir import Network
from bsnc.lang.frontend import network_from_program
from bsnc.lang.program import Program, load_program
from bsnc.launch import Launch, launch
from bsnc.search import reward as rewards
from bsnc.search.budget_anneal import anneal_span, anneal_warning, search_budget
from bsnc.search.checkpoint import load_checkpoint, load_weights, read_run_config, save_checkpoint
from bsnc.search.gates import ENTROPY_WEIGHT, PATH_LR, gate_optimizer
from bsnc.search.loggers import logger_path_problem, open_loggers
from bsnc.search.reward import BUDGET_USE, IDLE_PENALTY
from bsnc.search.selection import ParetoFront, Point, point_file
from bsnc.search.warnings import budget_warnings, epoch_warnings, warn


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as config.json."""

    file: str
    defines: dict[str, str] = field(default_factory=dict)
    primitives: list[str] = field(default_factory=list)  # --primitives modules, loaded before the file
    data: str = "digits"
    data_dir: str | None = None
    cost: str = "flops"
    budget: str | None = None
    lam: float = 2.0
    penalty: str = "hinge"
    inconsistent_penalty: float = 0.0  # added to the derived floor of an inconsistent sample (search/reward.py)
    entropy_weight: float = ENTROPY_WEIGHT  # of H(Γ) in the loss, ramped up over the search (search/gates.py)
    budget_use: float = BUDGET_USE  # reward for using the budget, in the reward only (search/reward.py)
    budget_anneal: int | None = None  # search epochs to lower the reward's budget; None: auto (search/budget_anneal.py)
    idle_penalty: float = IDLE_PENALTY  # per idle edge, in the reward only (search/reward.py)
    epochs: int = 10
    warmup_epochs: int | None = None  # None: a sixth of the epochs (the paper's 50 of 300), see warmup_for
    batch_size: int = 64
    lr: float = 0.1
    path_lr: float = PATH_LR  # Γ's step per epoch (search/gates.py)
    optimizer: str = "sgd"  # sgd, adam or adamw (the weights; Γ takes its own SGD steps, search/gates.py)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"  # step (÷10 at each milestone), cosine or constant
    milestones: tuple[float, ...] = (0.5, 0.75)
    device: str = "auto"
    amp: bool = False
    channels_last: bool | None = None  # image maps channels-last; None: codegen/layout.py's default, or a resumed run's
    seed: int = 0
    run_dir: str = "runs/run"
    resume: bool = False
    workers: int = 0
    progress: bool = True
    full_network: bool = False  # every edge on, no search: the static baseline of a sweep
    loggers: tuple[str, ...] = ()
    quiet: bool = False  # no per-epoch lines

    def reproducible(self) -> dict[str, Any]:
        """The fields that decide the result (not where it is written or how it is shown)."""
        data = dataclasses.asdict(self)
        for key in ("resume", "progress", "quiet", "run_dir", "workers", "loggers"):
            data.pop(key)
        data["milestones"] = list(self.milestones)
        if not self.primitives:
            data.pop("primitives")  # so runs without user primitives read as before they existed
        return data


@dataclass
class EpochMetrics:
    epoch: int
    phase: str
    train_loss: float
    train_acc: float
    mean_sampled_cost: float
    deterministic_cost: float
    consistent: bool
    within_budget: bool
    entropy: float
    edges_kept: int
    val_acc: float
    val_loss: float | None  # None in runs recorded before it was
    test_acc: float | None
    lr: float
    time: float
    gamma: dict[str, float] = field(default_factory=dict)  # each stochastic edge's γ, by edge key
    budget: float | None = None
    search_budget: float | None = None  # the reward's budget this epoch (search/budget_anneal.py)
    cheapest_cost: float | None = None  # the cheapest architecture that reaches the output
    cheapest_exact: bool | None = None  # False: an upper bound (costs/cheapest.py)
    val_miou: float | None = None  # segmentation: mean intersection over union of the classes
    test_miou: float | None = None


@dataclass
class TrainResult:
    run_dir: Path
    model: nn.Module
    network: Network
    history: list[EpochMetrics]
    test_acc: float  # of the model export ships (best.pt) when there is one, else of the last epoch
    deterministic_cost: float
    budget: float | None
    shipped: Point | None = None  # best.pt: the most accurate architecture within budget; None: no such one
    front: ParetoFront | None = None
    cost: Cost | None = None  # what ``deterministic_cost`` and ``budget`` measure (``cost.format`` shows a value)
    unexportable: str | None = None  # why export could not write the last epoch's architecture that it could not


RUN_FILES = ("config.json", "metrics.jsonl", "pareto.json", "ckpt.pt", "best.pt")  # what a run keeps


class _Distributed:
    """torchrun's environment, or a single process."""

    def __init__(self, device: torch.device, place: Launch):
        self.world, self.rank, self.local_rank = place.world, place.rank, place.local_rank
        self.enabled = place.distributed
        self.owned = self.enabled and not dist.is_initialized()  # this run started the group
        if self.owned:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def close(self) -> None:
        """Destroy the process group this run started: a process that exits with gloo's threads
        still running can abort ("terminate called without an active exception")."""
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False

    def barrier(self) -> None:
        """Wait for every process; one that stopped early is an error here too, in bsnc's words."""
        if not self.enabled:
            return
        try:
            dist.barrier()
        except RuntimeError as exc:  # gloo: the peer closed its connection; NCCL: a timeout
            raise BsncError(f"another process of this torchrun job stopped before the end of the run; "
                            f"its output says why ({exc})") from None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: torch.Tensor, count: int) -> torch.Tensor:
        """The mean over every process's rows of ``value`` (a sum over ``count`` local rows)."""
        if not self.enabled:
            return value / max(count, 1)
        pair = torch.stack([value.detach().double().sum(), torch.tensor(float(count), device=value.device).double()])
        dist.all_reduce(pair)
        return (pair[0] / pair[1].clamp(min=1)).to(value.dtype)

    def max(self, value: float, device: torch.device) -> float:
        """The largest of every process's ``value``."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def total(self, *values: float, device: torch.device) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()


def _resolve_device(name: str, place: Launch) -> torch.device:
    from bsnc.costs.latency import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and place.distributed:
        device = torch.device("cuda", place.local_rank)
        torch.cuda.set_device(device)
    return device


def idle_edges(arch: Architecture) -> torch.Tensor:
    """[B] the number of edges switched on whose destination does not reach the output."""
    return (arch.drawn & ~arch.active).sum(dim=1)


def _task_loss(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss and per-example accuracy (pixel accuracy for segmentation)."""
    loss = F.cross_entropy(out.float(), y, reduction="none")
    correct = (out.argmax(dim=1) == y).float()
    if loss.dim() > 1:
        loss = loss.flatten(1).mean(dim=1)
        correct = correct.flatten(1).mean(dim=1)
    return loss, correct


def intersection_union(pred: torch.Tensor, target: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the pixels both predicted and labelled so, and those either predicted or labelled so."""
    pred, target = pred.flatten().long().cpu(), target.flatten().long().cpu()
    inter = torch.bincount(target[pred == target], minlength=classes)[:classes].double()
    union = (torch.bincount(pred, minlength=classes)[:classes] + torch.bincount(target, minlength=classes)[:classes]
             ).double() - inter
    return inter, union


def mean_iou(inter: torch.Tensor, union: torch.Tensor) -> float:
    """The mean of intersection / union over the classes that occur (union > 0)."""
    present = union > 0
    return float((inter[present] / union[present]).mean()) if bool(present.any()) else 0.0


def warmup_for(epochs: int) -> int:
    """The default warm-up: the paper's proportion, 50 epochs of 300 with every edge on before
    the search, rounded down (so runs of under six epochs search from the start)."""
    return epochs // 6


def validate_config(config: TrainConfig) -> None:
    # NaN and infinities first: every comparison below is false for a NaN
    top = numeric.MAX_REAL
    numeric.real("--lambda", config.lam, 0, top)
    numeric.real("--lr", config.lr, 0, top, min_open=True)
    numeric.real("--path-lr", config.path_lr, 0, top)
    numeric.real("--inconsistent-penalty", config.inconsistent_penalty, 0, top)
    numeric.real("--momentum", config.momentum, 0, 1, max_open=True)
    numeric.real("--weight-decay", config.weight_decay, 0, top)
    numeric.real("--entropy-weight", config.entropy_weight, 0, top)
    numeric.real("--budget-use", config.budget_use, 0, top)
    numeric.real("--idle-penalty", config.idle_penalty, 0, top)
    if config.budget_anneal is not None and (isinstance(config.budget_anneal, bool)
                                             or not isinstance(config.budget_anneal, int) or config.budget_anneal < 0):
        raise UsageError(f"--budget-anneal {config.budget_anneal!r}: expected a number of epochs >= 0")
    numeric.whole("--batch-size", config.batch_size, 1, numeric.MAX_BATCH_SIZE)
    numeric.whole("--seed", config.seed, 0, numeric.MAX_SEED)
    numeric.whole("--epochs", config.epochs, 1, numeric.MAX_EPOCHS)
    numeric.whole("--workers", config.workers, 0, numeric.MAX_WORKERS)
    if config.lam < 0:
        raise UsageError(f"--lambda {config.lam}: lambda must be >= 0")
    if config.penalty not in ("hinge", "abs"):
        raise UsageError(f"--penalty {config.penalty}: expected hinge or abs")
    if config.epochs < 1:
        raise UsageError(f"--epochs {config.epochs}: expected at least 1")
    if config.warmup_epochs is not None and not 0 <= config.warmup_epochs < config.epochs:
        raise UsageError(f"--warmup-epochs {config.warmup_epochs}: expected 0 <= N < --epochs ({config.epochs})")
    if config.batch_size < 1:
        raise UsageError(f"--batch-size {config.batch_size}: expected at least 1")
    if config.lr <= 0 or config.path_lr < 0:
        raise UsageError(f"--lr {config.lr} / --path-lr {config.path_lr}: learning rates must be positive")


def parse_budget_text(text: str) -> float | None:
    """The fraction of the full cost that a percentage budget ('30%') names; None for a budget in
    the cost's own unit (checked by the cost)."""
    stripped = text.strip()
    if not stripped.endswith("%"):
        return None
    try:
        fraction = float(stripped[:-1].strip()) / 100
    except ValueError:
        raise UsageError(f"--budget {text}: expected a percentage of the full cost such as 30%") from None
    if not (math.isfinite(fraction) and fraction > 0):
        raise UsageError(f"--budget {text}: the percentage must be a finite number above 0")
    return fraction


def parse_budget(cost: Cost, text: str | None, reference: float | None = None) -> float | None:
    """A budget in the cost's unit, or a percentage ('30%') of ``reference``: the largest
    architecture's cost (costs/largest.py; the full super network's when not given)."""
    if text is None:
        return None
    fraction = parse_budget_text(text)
    value = cost.parse_budget(text) if fraction is None else fraction * (cost.full() if reference is None else reference)
    if not math.isfinite(value):
        raise UsageError(f"--budget {text}: expected a finite budget")
    if not value > 0:
        raise UsageError(f"--budget {text}: the budget must be greater than 0")
    return value


def _sources(program: Program) -> dict[str, str]:
    return {unit.shown: unit.text for unit in program.units}


class Trainer:
    def __init__(self, config: TrainConfig, datasets: Any = None, initial: dict[str, Any] | None = None):
        """``datasets``: the user's (train, val, test) Datasets (or `Splits`) instead of ``config.data``
        (then only the name shown for them); ``initial``: a state dict to start from."""
        from bsnc.search import data

        given = datasets

        validate_config(config)
        self.config = config
        primitives.load(config.primitives)
        self.program = load_program(config.file)
        self.network = network_from_program(self.program, config.defines)
        if config.full_network:
            self.network = full_network(self.network)
        self.stochastic = bool(self.network.stochastic_edges)
        self.cost = parse_cost(config.cost, self.network)
        self.full_cost = self.cost.full()  # every edge on: no architecture costs more (for a monotone cost)
        # what percentages, the "does not constrain" warning and the budget anneal measure against
        self.largest = largest_architecture(self.network, self.cost)
        self.budget = parse_budget(self.cost, config.budget, self.largest.cost)
        self.cheapest = cheapest_consistent(self.network, self.cost) if self.stochastic else None
        if self.stochastic and self.budget is None:
            raise UsageError(f"--budget is needed to train {self.network.name}, which has stochastic edges "
                             f"(its full {self.cost.name} cost is {self.cost.format(self.cost.full())})")
        place = launch()
        self.device = _resolve_device(config.device, place)
        dense_threshold(self.device)  # a bad BSNC_DENSE_THRESHOLD is refused before the run directory is made
        self.dist = _Distributed(self.device, place)
        check_fits(self.network, self.device, config.batch_size, training=True)
        self.run_dir = Path(config.run_dir)
        self._lock: DirectoryLock | None = None
        self._check_run_dir()

        if given is None:
            self.splits = data.load_data(
                config.data, Path(config.data_dir) if config.data_dir else None, config.seed,
                input_shape=self.network.layer(self.network.input).shape,
                num_classes=self.network.layer(self.network.output).shape[0],
            )
        elif isinstance(given, data.Splits):
            self.splits = given
        else:
            self.splits = data.user_splits(config.data, given, self.network.layer(self.network.output).shape[0])
        data.check_compatible(self.splits.info, self.network)
        self.empty_loss = rewards.empty_loss(self.network.layer(self.network.output).shape[0])
        self._prepare_run_dir()
        try:
            self._build(config, initial)
        except BaseException:
            if self._lock is not None:  # held since _prepare_run_dir: let the run directory go
                self._lock.release()
            raise

    def _build(self, config: TrainConfig, initial: dict[str, Any] | None) -> None:
        """The model, optimisers and schedules, and a resumed run's state."""
        torch.manual_seed(config.seed)
        self.core = compile_network(self.network)()
        if initial is not None:
            self.core.load_state_dict(initial)
        if config.channels_last is None:
            self.config = config = dataclasses.replace(config, channels_last=self._default_channels_last())
        self.memory_format = memory_format_for(self.network, config.channels_last)
        self.core = self.core.to(self.device, memory_format=self.memory_format)
        self.core.memory_format = self.memory_format
        self.initial_entropy = self.entropy_bits()
        self.model: nn.Module = self.core
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.stochastic:
                # The gates feed the REINFORCE term, not the forward output that DDP traces: they are
                # left out of DDP and their gradient is averaged by hand (see _average_gate_grad).
                # (".gate_logits" too: DDP names a root module's parameters with a leading dot)
                nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    self.core, ["gate_logits", ".gate_logits"])
            # rows of a process may leave some edges unused in a step
            self.model = nn.parallel.DistributedDataParallel(self.core, device_ids=ids, find_unused_parameters=True)
        weights = [p for name, p in self.core.named_parameters() if name != "gate_logits"]
        groups = [{"params": weights, "lr": config.lr, "weight_decay": config.weight_decay, "momentum": config.momentum}]
        self.optimizer = _optimizer(config.optimizer, groups, config.lr)
        if config.schedule not in SCHEDULES:
            raise UsageError(f"--schedule {config.schedule}: expected one of {', '.join(SCHEDULES)}")
        steps = len(self._loader(self.splits.train, True, 0))
        self.gate_optimizer = gate_optimizer(self.core.gate_logits, config.path_lr, steps) if self.stochastic else None
        milestones = sorted({max(1, round(m * config.epochs)) for m in config.milestones})

        def step_decay(epoch: int) -> float:
            if config.schedule == "cosine":
                return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
            if config.schedule == "constant":
                return 1.0
            return 0.1 ** sum(epoch >= m for m in milestones)

        # the weights' learning rate steps down; the edge probabilities keep theirs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, [step_decay])
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        # resolved once: a run extended with --resume --epochs N keeps the warm-up it had
        self.warmup = config.warmup_epochs if config.warmup_epochs is not None else warmup_for(config.epochs)
        # resolved once too: the reward's budget of an epoch does not change when a run is extended
        self.anneal_span = self._anneal_span()
        self.start_epoch = 0
        self.best_val = -1.0
        self.last_unexportable: str | None = None  # why export could not write an epoch's architecture
        self.front = ParetoFront()
        self.history: list[EpochMetrics] = []
        if config.resume:
            self._resume()

    # --- run directory and checkpoints ---------------------------------------------------------

    def _default_channels_last(self) -> bool:
        """A resumed run keeps its layout (contiguous for a run from before the option); a new
        one is channels-last when codegen/layout.py says the network can be."""
        if self.config.resume:
            saved = read_run_config(self.run_dir)  # a damaged config.json is an error naming it
            recorded = saved["config"] if "config" in saved else \
                load_checkpoint(self.run_dir / "ckpt.pt", map_location="cpu").get("config", {})
            return bool(recorded.get("channels_last", False))
        return channels_last_by_default(self.network)

    def _check_run_dir(self) -> None:
        exists = (self.run_dir / "ckpt.pt").exists()
        if self.config.resume and not exists:
            if self.run_dir.is_dir():  # a run still in its first epoch: say that, not "no ckpt.pt"
                DirectoryLock(self.run_dir, f"--run-dir {self.run_dir}").release()
            raise UsageError(f"--resume: {self.run_dir} holds no ckpt.pt to resume from")
        if not self.config.resume and exists:
            raise UsageError(f"--run-dir {self.run_dir}: a run is already there; pass --resume to continue it "
                             "or choose another --run-dir")

    def _prepare_run_dir(self) -> None:
        if not self.dist.main:
            return
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UsageError(f"--run-dir {self.run_dir}: it is {kind_of(self.run_dir)}, not a directory")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"--run-dir {self.run_dir}: cannot write there ({exc.strerror})") from None
        # held until the run ends: a second `bsnc train` (or --resume) of this run directory is
        # refused while this one writes it, instead of interleaving their files
        self._lock = DirectoryLock(self.run_dir, f"--run-dir {self.run_dir}")
        self._check_run_dir()  # again, under the lock: a run that ended meanwhile may have left ckpt.pt
        remove_leftovers(self.run_dir)  # temporary files of a write that was interrupted
        remove_leftovers(self.run_dir / "pareto")  # and of a Pareto point's checkpoint
        for name in RUN_FILES:  # a FIFO or device there would hang or fail a write after an epoch of work
            path = self.run_dir / name
            if path.exists() and not path.is_file():
                raise UsageError(f"--run-dir {self.run_dir}: {name} is {kind_of(path)}, not a file this run can "
                                 "keep its records in; remove it")
        problem = logger_path_problem(self.config.loggers, self.run_dir)
        if problem is not None:
            raise UsageError(f"--run-dir {self.run_dir}: {problem}; remove it")

    def _identity(self) -> dict[str, Any]:
        return {"source_hash": self.program.source_hash(), "defines": dict(self.config.defines),
                "network": self.network.name}

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            **self._identity(),
            "epoch": epoch,
            "model": self.core.state_dict(),
            "warmup": self.warmup,
            "anneal_span": self.anneal_span,
            "optimizer": self.optimizer.state_dict(),
            "gate_optimizer": self.gate_optimizer.state_dict() if self.gate_optimizer is not None else None,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_val": self.best_val,
            "pareto": self.front.to_json(),
            "rng": torch.get_rng_state(),
            "config": json.loads(json.dumps(self.config.reproducible())),
            "history": [dataclasses.asdict(m) for m in self.history],
            "params": {k: v for k, v in self.network.params.items()},
            "budget": self.budget,
            "cost": self.cost.name,
        }

    def _resume(self) -> None:
        state = load_checkpoint(self.run_dir / "ckpt.pt", map_location=self.device)
        mine = self._identity()
        if state.get("source_hash") != mine["source_hash"]:
            raise UsageError(f"--resume: {self.run_dir}/ckpt.pt was trained from another version of "
                             f"{self.config.file} (source hash differs); start a new --run-dir")
        if state.get("defines") != mine["defines"]:
            raise UsageError(f"--resume: {self.run_dir}/ckpt.pt was trained with -D {state.get('defines')}, "
                             f"not {mine['defines']}; pass the same overrides or start a new --run-dir")
        then = state.get("config", {})
        now = json.loads(json.dumps(self.config.reproducible()))
        # --epochs may change: it extends (or finishes) the run, schedules stretched to the new length
        changed = [k for k in now if k not in ("file", "defines", "device", "amp", "channels_last", "epochs") and then.get(k) != now[k]]
        if changed:
            listing = ", ".join(f"{k} {then.get(k)!r} -> {now[k]!r}" for k in changed)
            raise UsageError(f"--resume: {self.run_dir} was trained with other settings ({listing}); "
                             "pass the same options or start a new --run-dir")
        recorded = state.get("budget")
        if isinstance(recorded, (int, float)) and self.budget is not None and float(recorded) != self.budget:
            # the same --budget text, another value: a percentage that an older bsnc measured
            # against the full super network; the run keeps what its front was judged against
            if self.dist.main:
                warn(f"--resume: this run's budget {self.config.budget} was {self.cost.format(float(recorded))} when "
                     f"it started (now it would be {self.cost.format(self.budget)}); it keeps "
                     f"{self.cost.format(float(recorded))}")
            self.budget = float(recorded)
        path = self.run_dir / "ckpt.pt"
        load_weights(self.core, state["model"], path, f"network {self.network.name}")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.gate_optimizer is not None and state.get("gate_optimizer") is not None:
                self.gate_optimizer.load_state_dict(state["gate_optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            done = int(state["epoch"]) + 1
            if self.config.epochs < done:
                raise UsageError(f"--epochs {self.config.epochs}: {self.run_dir} has already trained {done} epochs; "
                                 f"pass --epochs {done} or more to resume it")
            # the weights' schedule of an --epochs N run, from the epoch reached (stretched when N changed)
            for group, base, rule in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                         self.scheduler.lr_lambdas):
                group["lr"] = base * rule(self.scheduler.last_epoch)
            self.scaler.load_state_dict(state["scaler"])
            self.best_val = float(state["best_val"])
            self.front = ParetoFront.from_json(state.get("pareto", []))
            self.start_epoch = done
            if self.config.warmup_epochs is None and isinstance(state.get("warmup"), int):
                self.warmup = state["warmup"]
            # a run from before the budget annealed (no "anneal_span") keeps the final budget throughout
            self.anneal_span = int(state.get("anneal_span", 0))
            self.history = [EpochMetrics(**{"consistent": True, "val_loss": None, **m}) for m in state["history"]]
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise BsncError(f"{path}: damaged checkpoint: cannot restore the training state "
                            f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None

    def _write_config(self) -> None:
        data = {
            "config": self.config.reproducible(),
            "network": self.network.name,
            "params": self.network.params,
            "source_hash": self.program.source_hash(),
            "sources": _sources(self.program),
            "torch": torch.__version__,
            "world_size": self.dist.world,
        }
        atomic_write_text(self.run_dir / "config.json", json.dumps(data, indent=2) + "\n", special=False)

    def _write_metrics(self) -> None:
        lines = "".join(json.dumps(self.record(m)) + "\n" for m in self.history)
        atomic_write_text(self.run_dir / "metrics.jsonl", lines, special=False)

    # --- data ----------------------------------------------------------------------------------

    def _loader(self, dataset, train: bool, epoch: int):
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        sampler = None
        if self.dist.enabled:
            sampler = DistributedSampler(dataset, num_replicas=self.dist.world, rank=self.dist.rank,
                                         shuffle=train, seed=self.config.seed, drop_last=train)
            sampler.set_epoch(epoch)
        # a last training batch of one row would give batch norm nothing to normalise over
        drop_last = train and len(dataset) % self.config.batch_size == 1 and len(dataset) > 1
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=train and sampler is None,
                          sampler=sampler, generator=generator, num_workers=self.config.workers,
                          drop_last=drop_last, pin_memory=self.device.type == "cuda")

    # --- training ------------------------------------------------------------------------------

    def _on_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of inputs on the run's device, in the network's memory format."""
        x = x.to(self.device, non_blocking=True)
        return x if self.memory_format is torch.contiguous_format else x.contiguous(memory_format=self.memory_format)

    @contextlib.contextmanager
    def _layout_errors(self):
        """A module that calls ``.view`` on a channels-last map: say which option to change."""
        try:
            yield
        except RuntimeError as exc:
            if self.memory_format is torch.contiguous_format or "view size is not compatible" not in str(exc):
                raise
            raise UsageError("--channels-last: a module of the network called .view on a channels-last map, "
                             "which has no such view; use .reshape in it, or pass --no-channels-last") from None

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def train_epoch(self, epoch: int, phase: str) -> tuple[float, float, float]:
        from tqdm import tqdm

        self.model.train()
        if self.stochastic:
            self.core.set_mode("full" if phase == "warmup" else "sample")
        # per-epoch seeds make a resumed run draw exactly what an uninterrupted one draws
        torch.manual_seed(self.config.seed * 7919 + epoch * 104729 + self.dist.rank)
        loader = self._loader(self.splits.train, True, epoch)
        totals = torch.zeros(4, dtype=torch.float64)  # loss, correct, cost, rows
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.config.epochs} {phase}", unit="batch", leave=False,
                   disable=not (self.config.progress and self.dist.main))
        for step, (x, y) in enumerate(bar):
            x, y = self._on_device(x), y.to(self.device, non_blocking=True)
            with self._autocast(), self._layout_errors():
                out = self.model(x)
            delta, correct = _task_loss(out, y)
            loss = delta.mean()
            sampled_cost = torch.zeros(x.shape[0], dtype=torch.float64)
            if self.stochastic:
                arch = self.core.last
                sampled_cost = self.cost(arch.active_cpu())
                if phase == "search":
                    budget = self.search_budget(epoch)
                    ratio = (sampled_cost / budget).to(self.device, torch.float32)
                    reward = rewards.reward(delta, ratio, arch.inconsistent, lam=self.config.lam,
                                            kind=self.config.penalty, empty=self.empty_loss,
                                            full_ratio=self.full_cost / budget,
                                            extra=self.config.inconsistent_penalty, idle=idle_edges(arch),
                                            idle_weight=self.config.idle_penalty,
                                            max_idle=len(self.network.edges),
                                            use_weight=self.config.budget_use,
                                            global_max=lambda bound: self.dist.max(bound, self.device))
                    adv = rewards.advantage(reward, lambda v: self.dist.mean(v.sum(), v.shape[0]))
                    loss = loss + (adv.detach() * arch.log_prob).mean()
                    loss = loss + self.entropy_weight(epoch) * self.core.entropy()
            if not torch.isfinite(loss):
                raise BsncError(f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopped; "
                                f"{self._last_checkpoint()} (try a lower --lr or --path-lr)")
            self.optimizer.zero_grad(set_to_none=True)
            if self.gate_optimizer is not None:
                self.gate_optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self._average_gate_grad()
            self.scaler.step(self.optimizer)
            if self.gate_optimizer is not None and phase == "search":
                self.scaler.step(self.gate_optimizer)
            self.scaler.update()
            totals += torch.tensor([float(delta.detach().sum()), float(correct.sum()), float(sampled_cost.sum()),
                                    x.shape[0]], dtype=torch.float64)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(delta.detach().mean()):.3f}")
        loss_sum, correct_sum, cost_sum, rows = self.dist.total(*totals.tolist(), device=self.device)
        rows = max(rows, 1)
        return loss_sum / rows, correct_sum / rows, cost_sum / rows

    def search_budget(self, epoch: int) -> float | None:
        """The budget of the reward at ``epoch`` (0-based): annealed from the full cost to
        ``--budget`` over the first search epochs (search/budget_anneal.py)."""
        if self.budget is None:
            return None
        return search_budget(self.budget, self.largest.cost, epoch - self.warmup + 1, self.anneal_span)

    def _anneal_span(self) -> int:
        """Search epochs over which the reward's budget falls to ``--budget``."""
        config = self.config
        searching = config.epochs - self.warmup
        if config.budget_anneal is not None and config.budget_anneal > searching:
            raise UsageError(f"--budget-anneal {config.budget_anneal}: the run has {searching} search epochs "
                             f"(--epochs {config.epochs}, {self.warmup} of warm-up); the reward's budget would "
                             "never reach --budget")
        if self.budget is None:
            return 0
        return anneal_span(self.budget, self.largest.cost, searching, config.budget_anneal)

    def entropy_weight(self, epoch: int) -> float:
        """The weight of H(Γ) in the search loss: 0 at the first search epoch, rising linearly to
        ``--entropy-weight`` at the last (search/gates.py)."""
        config = self.config
        span = config.epochs - self.warmup
        return config.entropy_weight * ((epoch - self.warmup) / (span - 1) if span > 1 else 1.0)

    def entropy_bits(self) -> float:
        """Mean entropy of Γ's decisions (gates and choice groups), in bits: 1 is a fair coin, 0
        decided (a choice of K options starts at log2 K)."""
        if not self.stochastic:
            return 0.0
        with torch.no_grad():
            return float(self.core.entropy()) / self.core.structure.n_decisions / math.log(2)

    def _average_gate_grad(self) -> None:
        if not (self.dist.enabled and self.stochastic):
            return
        gate = self.core.gate_logits
        if gate.grad is None:
            gate.grad = torch.zeros_like(gate)
        dist.all_reduce(gate.grad)
        gate.grad /= self.dist.world

    def evaluate(self, dataset) -> float:
        return self.evaluate_full(dataset)[0]

    @torch.no_grad()
    def evaluate_full(self, dataset) -> tuple[float, float, float | None]:
        """Accuracy (pixel accuracy for segmentation), mean loss and, for segmentation, the mean
        IoU over the classes present in the predictions or the labels, of the deterministic
        architecture on ``dataset``."""
        self.core.eval()
        if self.stochastic:
            self.core.set_mode("deterministic")
        correct = loss = rows = 0.0
        segmentation = self.splits.info.task == "segmentation"
        classes = self.splits.info.num_classes
        inter = torch.zeros(classes, dtype=torch.float64)
        union = torch.zeros(classes, dtype=torch.float64)
        for x, y in self._loader(dataset, False, 0):
            x, y = self._on_device(x), y.to(self.device)
            with self._autocast(), self._layout_errors():
                out = self.core(x)
            delta, c = _task_loss(out, y)
            correct += float(c.sum())
            loss += float(delta.sum())
            rows += x.shape[0]
            if segmentation:
                i, u = intersection_union(out.argmax(dim=1), y, classes)
                inter += i
                union += u
        totals = self.dist.total(correct, loss, rows, *inter.tolist(), *union.tolist(), device=self.device)
        correct, loss, rows = totals[0], totals[1], max(totals[2], 1)
        if not segmentation:
            return correct / rows, loss / rows, None
        return correct / rows, loss / rows, mean_iou(torch.tensor(totals[3:3 + classes]), torch.tensor(totals[3 + classes:]))

    def deterministic_cost(self) -> tuple[float, int, bool]:
        """Cost of the deterministic architecture, its kept edges (``kept_edges``: what export
        keeps, fixed edges included), and whether it reaches the output."""
        if not self.stochastic:
            return self.full_cost, len(self.network.edges), True
        active = kept_edges(self.network, self.core.gate_logits)
        return float(self.cost(active.unsqueeze(0))[0]), int(active.sum()), bool(active.any())

    def unexportable(self) -> str | None:
        """Why export cannot write the deterministic architecture (None: it can). Only a `concat`
        layer whose absent slot no exported layer can fill with zeros stops it."""
        if not self.stochastic or not any(layer.aggregate == "concat" for layer in self.network.layers):
            return None
        try:
            prune(self.network, kept_edges(self.network, self.core.gate_logits))
        except BsncError as exc:
            return str(exc)
        return None

    def run(self) -> TrainResult:
        config = self.config
        loggers = []
        if self.dist.main:
            self._write_config()
            if self.start_epoch == 0 and self.stochastic:
                for message in budget_warnings(self.cost, self.budget, self.cheapest, self.largest):
                    warn(message)
                if self.budget is not None and config.budget_anneal is None and config.epochs > self.warmup:
                    message = anneal_warning(self.budget, self.largest.cost, self.anneal_span,
                                             "the full cost" if self.largest.full else "the largest architecture's cost")
                    if message:
                        warn(message)
            loggers = open_loggers(config.loggers, self.run_dir, [self.record(m) for m in self.history])
        try:
            return self._run(loggers)
        finally:
            for logger in loggers:
                logger.close()

    def record(self, metrics: EpochMetrics) -> dict[str, Any]:
        """One epoch as written to metrics.jsonl and the loggers."""
        return dataclasses.asdict(metrics)

    def _run(self, loggers: list) -> TrainResult:
        config = self.config
        for epoch in range(self.start_epoch, config.epochs):
            phase = "warmup" if epoch < self.warmup else "search"
            if not self.stochastic:
                phase = "train"
            if self.stochastic and epoch == self.warmup and self.warmup > 0:
                self.core.reset_gates()  # each edge's initial probability (`prob`, else logit 3)
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss, train_acc, sampled = self.train_epoch(epoch, phase)
            self.scheduler.step()
            val_acc, val_loss, val_miou = self.evaluate_full(self.splits.val)
            det_cost, kept, consistent = self.deterministic_cost()
            last = epoch == config.epochs - 1
            gamma = self.core.gamma().detach() if self.stochastic else torch.empty(0)
            # an architecture that does not reach the output costs nothing but is no model; nor
            # is one that export cannot write
            unexportable = self.unexportable() if consistent else None
            if unexportable is not None:
                self.last_unexportable = unexportable
                if self.dist.main:
                    warn(f"epoch {epoch + 1}: export cannot write the deterministic architecture, so it is not a "
                         f"candidate to ship: {unexportable}")
            candidate = consistent and unexportable is None
            within = candidate and (self.budget is None or det_cost <= self.budget)
            joined, _ = (self.front.offer(Point(epoch + 1, val_acc, det_cost, within))
                         if candidate else (False, []))
            best = self.front.best()
            improved = joined and best is not None and best.epoch == epoch + 1
            # test accuracy of every model that joins the Pareto front, and of the last one
            test_acc, test_miou = (self.evaluate_full(self.splits.test)[::2] if (last or joined)
                                   else (None, None))
            if joined:
                self.front.replace(Point(epoch + 1, val_acc, det_cost, within, test_acc))
            metrics = EpochMetrics(
                epoch=epoch + 1, phase=phase, train_loss=train_loss, train_acc=train_acc,
                mean_sampled_cost=sampled if self.stochastic else det_cost, deterministic_cost=det_cost,
                consistent=consistent, within_budget=within, entropy=self.entropy_bits(), edges_kept=kept, val_acc=val_acc, val_loss=val_loss,
                test_acc=test_acc, lr=lr, time=time.perf_counter() - start, val_miou=val_miou, test_miou=test_miou,
                gamma=dict(zip(self.core.stochastic_keys, gamma.tolist())) if self.stochastic else {},
                budget=self.budget, search_budget=self.search_budget(epoch) if phase == "search" else None,
                cheapest_cost=self.cheapest.cost if self.cheapest else None,
                cheapest_exact=self.cheapest.exact if self.cheapest else None,
            )
            self.history.append(metrics)
            if improved:
                self.best_val = val_acc
            if self.dist.main:
                # in an order that a crash between any two writes leaves no file naming a missing
                # one: a point's checkpoint before the front that lists it, ckpt.pt (whose state
                # holds the front too, and which a resume redoes the epoch from) after them, and
                # the checkpoints of points off the front (left this epoch, or by a crash before)
                # removed last
                state = self._state(epoch)
                if joined:
                    (self.run_dir / "pareto").mkdir(exist_ok=True)
                    save_checkpoint(self.run_dir / point_file(epoch + 1), state)
                if improved:
                    save_checkpoint(self.run_dir / "best.pt", state)
                front = json.dumps(self.front.to_json(), indent=2) + "\n"
                atomic_write_text(self.run_dir / "pareto.json", front, special=False)
                self._write_metrics()
                save_checkpoint(self.run_dir / "ckpt.pt", state)
                self._remove_points_off_the_front()
                for logger in loggers:
                    logger.log(self.record(metrics))
                if not config.quiet:
                    print(self.summary_line(metrics), flush=True)
                if phase == "search":
                    for message in epoch_warnings(self.cost, metrics.epoch, consistent, det_cost, self.budget,
                                                  metrics.search_budget):
                        warn(message)
        final = self.history[-1]
        shipped = self.front.best()
        if shipped is not None and shipped.test_acc is not None:
            test_acc = shipped.test_acc
        else:
            test_acc = final.test_acc if final.test_acc is not None else self.evaluate(self.splits.test)
        return TrainResult(self.run_dir, self.core, self.network, self.history, test_acc,
                           final.deterministic_cost, self.budget, shipped, self.front, self.cost,
                           self.last_unexportable)

    def _remove_points_off_the_front(self) -> None:
        named = {point.file for point in self.front.points}
        folder = self.run_dir / "pareto"
        for path in sorted(folder.glob("epoch-*.pt")) if folder.is_dir() else []:
            if f"pareto/{path.name}" not in named:
                path.unlink(missing_ok=True)

    def release(self) -> None:
        """Let go of the process group: the DistributedDataParallel wrapper first (its reducer
        holds the group, and its reference cycles would otherwise keep it, and gloo's threads,
        alive until the interpreter shuts down, where destroying them can abort), then the group."""
        if self.model is not self.core:
            self.model = self.core
            gc.collect()
        self.dist.close()
        if self._lock is not None:
            self._lock.release()

    def _last_checkpoint(self) -> str:
        """Which checkpoint a stopped run can go on from, as a sentence: one that exists, or none."""
        ckpt = self.run_dir / "ckpt.pt"
        if self.history and ckpt.is_file():
            return (f"the last good checkpoint is {ckpt} (epoch {self.history[-1].epoch}); continue it with "
                    "--resume or export it")
        return "no checkpoint was written yet (the first is written at the end of epoch 1)"

    def summary_line(self, m: EpochMetrics) -> str:
        cost = f"{self.cost.name} {self.cost.format(m.deterministic_cost)}"
        if self.budget is not None:
            annealing = m.search_budget is not None and m.search_budget != self.budget
            search = f", search budget {self.cost.format(m.search_budget)}" if annealing else ""
            cost += (f" (budget {self.cost.format(self.budget)}{search}, "
                     f"sampled {self.cost.format(m.mean_sampled_cost)})")
        parts = [f"epoch {m.epoch}/{self.config.epochs} {m.phase}", f"loss {m.train_loss:.3f}",
                 f"acc {m.train_acc * 100:.1f}%", f"val {m.val_acc * 100:.1f}%"]
        if m.val_miou is not None:
            parts.append(f"val mIoU {m.val_miou * 100:.1f}%")
        if m.test_acc is not None:
            parts.append(f"test {m.test_acc * 100:.1f}%")
        if m.test_miou is not None:
            parts.append(f"test mIoU {m.test_miou * 100:.1f}%")
        parts.append(cost)
        if self.stochastic:
            parts.append(f"H(Γ) {m.entropy:.3f} bits, kept {m.edges_kept}/{len(self.network.edges)} edges")
        parts.append(f"lr {m.lr:g}, {m.time:.1f}s")
        return " | ".join(parts)


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine", "constant")


def _optimizer(name: str, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's), or Adam/AdamW (``momentum`` then unused)."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name not in ("adam", "adamw"):
        raise UsageError(f"--optimizer {name}: expected one of {', '.join(OPTIMIZERS)}")
    plain = [{k: v for k, v in g.items() if k != "momentum"} for g in groups]
    return (torch.optim.Adam if name == "adam" else torch.optim.AdamW)(plain, lr=lr)


def train(config: TrainConfig, datasets: Any = None, initial: dict[str, Any] | None = None) -> TrainResult:
    trainer = Trainer(config, datasets, initial)
    try:
        result = trainer.run()
        trainer.dist.barrier()  # every process is done before any tears its group down
        return result
    except KeyboardInterrupt as stop:
        # checkpoints are written atomically: the last one is whole, whatever the moment of Ctrl-C
        raise Interrupted.of(stop, trainer._last_checkpoint()) from None
    finally:
        trainer.release()

