"""`bsnc report`: figures of runs and sweeps (matplotlib, PNG and SVG) and one self-contained
``report.html`` that shows them with each run's settings.

Per run: loss and accuracy, sampled and deterministic cost against the budget, H(Γ) and edges
kept, a heat map of every stochastic edge's γ over epochs (the paper's Figure 4), and the
learned architecture (the export diagram). Per sweep: test accuracy against cost with the Pareto
front, the full-network baseline and seeds as error bars (the paper's Pareto figures).
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsnc.errors import BsncError, UsageError, display_path
from bsnc.export.exporter import fresh_name
from bsnc.files import atomic_write_bytes, atomic_write_text
from bsnc.lang.summary import human

BUDGET_STYLE = {"color": "tab:red", "linestyle": "--", "linewidth": 1.2}


@dataclass
class Figure:
    name: str  # file stem inside the report directory
    title: str
    png: Path
    svg: Path | None


@dataclass
class Section:
    title: str
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)


# --- reading runs and sweeps ------------------------------------------------------------------


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    from bsnc.search.checkpoint import read_metrics

    records = read_metrics(run_dir)
    if not records:
        raise BsncError(f"{display_path(run_dir / 'metrics.jsonl')} holds no epoch yet")
    return records


def directory_kind(path: Path) -> str:
    """'sweep' (results.json), 'run' (metrics.jsonl), or an error naming what was expected."""
    if (path / "results.json").is_file():
        return "sweep"
    if (path / "metrics.jsonl").is_file():
        return "run"
    raise UsageError(f"{display_path(path)}: not a run directory (no metrics.jsonl) nor a sweep directory "
                     "(no results.json)")


# --- figures ------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window, whatever the environment says
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str, title: str) -> Figure:
    import io

    figures = {}
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        # fixed metadata keeps the files identical across runs
        fig.savefig(buffer, format=fmt, dpi=110, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else {"Software": None})
        figures[fmt] = out / f"{name}.{fmt}"
        atomic_write_bytes(figures[fmt], buffer.getvalue())
    _pyplot().close(fig)
    return Figure(name, title, figures["png"], figures["svg"])


def _engineering():
    """Axis labels as 200 k, 1.2 M: costs span orders of magnitude."""
    from matplotlib.ticker import EngFormatter

    return EngFormatter(sep=" ")


def _epochs(records: Sequence[Mapping[str, Any]]) -> list[int]:
    return [int(r["epoch"]) for r in records]


def _series(records: Sequence[Mapping[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    return [float(r[key]) * scale if r.get(key) is not None else math.nan for r in records]


def _shade_warmup(ax: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """Whole epochs on the x axis, and the warm-up epochs shaded."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    warm = [r["epoch"] for r in records if r.get("phase") == "warmup"]
    if warm:
        ax.axvspan(min(warm) - 0.5, max(warm) + 0.5, color="0.92", label="warm-up (all edges on)")


def loss_accuracy_figure(records: Sequence[Mapping[str, Any]], out: Path, name: str) -> Figure:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = _epochs(records)
    for ax in (left, right):
        _shade_warmup(ax, records)
    left.plot(epochs, _series(records, "train_loss"), marker="o", ms=3, label="training (sampled architectures)")
    if any(r.get("val_loss") is not None for r in records):
        left.plot(epochs, _series(records, "val_loss"), marker="s", ms=3, label="validation (deterministic)")
    left.set(title="Loss", xlabel="epoch", ylabel="cross-entropy (nats per example)")
    right.plot(epochs, _series(records, "train_acc", 100), marker="o", ms=3, label="training (sampled)")
    right.plot(epochs, _series(records, "val_acc", 100), marker="s", ms=3, label="validation (deterministic)")
    tests = [(r["epoch"], r["test_acc"] * 100) for r in records if r.get("test_acc") is not None]
    if tests:
        right.scatter(*zip(*tests), marker="*", s=70, color="tab:green", zorder=3, label="test")
    right.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: loss and accuracy")
    return _save(fig, out, "loss_accuracy", "Loss and accuracy")


def cost_figure(records: Sequence[Mapping[str, Any]], out: Path, cost_name: str, budget: float | None) -> Figure:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    epochs = _epochs(records)
    _shade_warmup(ax, records)
    ax.plot(epochs, _series(records, "mean_sampled_cost"), marker="o", ms=3, label="mean sampled cost")
    ax.plot(epochs, _series(records, "deterministic_cost"), marker="s", ms=3,
            label="deterministic architecture (γ > 0.5)")
    if budget is not None:
        ax.axhline(budget, label=f"budget {human(budget)}", **BUDGET_STYLE)
    cheapest = [r.get("cheapest_cost") for r in records if r.get("cheapest_cost") is not None]
    if cheapest:
        ax.axhline(cheapest[-1], color="0.4", linestyle=":", label=f"cheapest consistent {human(cheapest[-1])}")
    ax.set(title=f"Cost per example ({cost_name}) against the budget", xlabel="epoch", ylabel=f"{cost_name} per example")
    ax.yaxis.set_major_formatter(_engineering())
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, "cost", "Cost against the budget")


def entropy_figure(records: Sequence[Mapping[str, Any]], out: Path, stochastic_edges: int | None) -> Figure:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    epochs = _epochs(records)
    _shade_warmup(ax, records)
    line1 = ax.plot(epochs, _series(records, "entropy"), color="tab:purple", marker="o", ms=3,
                    label="mean H(Γ) (bits)")
    ax.set(title="Entropy of the edge probabilities and edges kept", xlabel="epoch", ylabel="mean entropy H(Γ) (bits)")
    # a choice group of k options has up to log2(k) bits, more than a gate's 1
    highest = max([v for v in _series(records, "entropy") if math.isfinite(v)], default=0.0)
    ax.set_ylim(0, max(1.02, 1.05 * highest))
    twin = ax.twinx()
    line2 = twin.plot(epochs, _series(records, "edges_kept"), color="tab:gray", marker="s", ms=3,
                      label="edges kept (what export keeps)")
    twin.set_ylabel("edges kept")
    twin.set_ylim(bottom=0, top=max([stochastic_edges or 0] + [v for v in _series(records, "edges_kept") if v == v]) + 1)
    ax.grid(alpha=0.3)
    ax.legend(line1 + line2, [h.get_label() for h in line1 + line2], fontsize=8)
    return _save(fig, out, "entropy", "H(Γ) and edges kept")


def gamma_heatmap(records: Sequence[Mapping[str, Any]], out: Path) -> Figure | None:
    keyed = [r for r in records if isinstance(r.get("gamma"), Mapping) and r["gamma"]]
    if not keyed:
        return None
    plt = _pyplot()
    keys = list(keyed[-1]["gamma"])
    values = [[float(r["gamma"].get(k, math.nan)) for r in keyed] for k in keys]
    height = min(12.0, 1.8 + 0.16 * len(keys))
    fig, ax = plt.subplots(figsize=(8, height))
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest",
                      extent=(keyed[0]["epoch"] - 0.5, keyed[-1]["epoch"] + 0.5, len(keys) - 0.5, -0.5))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="Edge probabilities γ over the epochs", xlabel="epoch", ylabel="stochastic edge")
    if len(keys) <= 60:
        ax.set_yticks(range(len(keys)), labels=keys, fontsize=6)
    else:
        ax.set_ylabel(f"stochastic edge (all {len(keys)}, in canonical order)")
    fig.colorbar(image, ax=ax, label="γ (probability the edge is on)")
    return _save(fig, out, "gammas", "γ of every stochastic edge")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points (cost, accuracy) that no other point beats on both (lower cost, higher
    accuracy), sorted by cost."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def sweep_figure(rows: Sequence[Mapping[str, Any]], out: Path, title: str) -> Figure | None:
    done = [r for r in rows if r.get("status") == "done" and r.get("cost") is not None
            and r.get("test_acc") is not None]
    if not done:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    cost_name = next((r["cost_name"] for r in done if r.get("cost_name")), "cost")
    runs = [r for r in done if r["kind"] == "budget"]
    baselines = [r for r in done if r["kind"] == "baseline"]
    if runs:
        ax.scatter([r["cost"] for r in runs], [r["test_acc"] * 100 for r in runs], s=16, color="tab:blue",
                   alpha=0.45, label="one run (a seed)")
        by_budget: dict[str, list[Mapping[str, Any]]] = {}
        for r in runs:
            by_budget.setdefault(r["budget"], []).append(r)
        for budget, group in by_budget.items():
            costs = [g["cost"] for g in group]
            accs = [g["test_acc"] * 100 for g in group]
            ax.errorbar(statistics.fmean(costs), statistics.fmean(accs),
                        xerr=statistics.pstdev(costs) if len(group) > 1 else None,
                        yerr=statistics.pstdev(accs) if len(group) > 1 else None,
                        fmt="o", color="tab:blue", ms=6, capsize=3,
                        label="mean ± std over seeds" if budget == next(iter(by_budget)) else None)
            value = group[0].get("budget_value")
            if value is not None:
                ax.axvline(value, color="tab:red", linestyle=":", linewidth=0.9, alpha=0.7)
                ax.annotate(f"budget {budget}", (value, 0), xycoords=("data", "axes fraction"),
                            xytext=(2, 4), textcoords="offset points", fontsize=7, color="tab:red", rotation=90)
        front = pareto_front([(r["cost"], r["test_acc"] * 100) for r in runs])
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:orange", linewidth=1.6,
                label="Pareto front")
    for i, r in enumerate(baselines):
        ax.scatter([r["cost"]], [r["test_acc"] * 100], marker="*", s=140, color="black", zorder=3,
                   label="full network (static baseline)" if i == 0 else None)
    ax.set(title=title, xlabel=f"{cost_name} per example (shipped architecture)", ylabel="test accuracy (%)")
    ax.xaxis.set_major_formatter(_engineering())
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out, "pareto", "Test accuracy against cost")


# --- sections -----------------------------------------------------------------------------


def run_section(run_dir: Path, out: Path, draw_architecture: bool = True) -> Section:
    from bsnc.search.checkpoint import read_run_config

    records = read_records(run_dir)
    saved = read_run_config(run_dir)
    config = saved.get("config", {})
    cost_name = config.get("cost", "cost")
    budget = next((r["budget"] for r in reversed(records) if r.get("budget") is not None), None)
    if budget is None:
        budget = _budget_from_checkpoint(run_dir)
    stochastic = _stochastic_count(run_dir, records)
    out.mkdir(parents=True, exist_ok=True)
    section = Section(f"Run {display_path(run_dir)}", _settings(saved, budget, cost_name))
    section.figures.append(loss_accuracy_figure(records, out, saved.get("network", run_dir.name)))
    section.figures.append(cost_figure(records, out, cost_name, budget))
    if stochastic is not None:
        section.figures.append(entropy_figure(records, out, stochastic))
        heat = gamma_heatmap(records, out)
        if heat is not None:
            section.figures.append(heat)
        else:
            section.notes.append("metrics.jsonl records no per-edge γ (a run from an older bsnc): no heat map.")
    if draw_architecture:
        diagram = architecture_figure(run_dir, out)
        if isinstance(diagram, str):
            section.notes.append(diagram)
        else:
            section.figures.append(diagram)
    return section


def _stochastic_count(run_dir: Path, records: Sequence[Mapping[str, Any]]) -> int | None:
    """How many stochastic edges the run searched over (None: a static network)."""
    if all(r.get("phase") == "train" for r in records):
        return None
    gammas = records[-1].get("gamma")
    if isinstance(gammas, Mapping):
        return len(gammas) or None
    from bsnc.search.checkpoint import load_checkpoint

    path = run_dir / "ckpt.pt"
    logits = load_checkpoint(path)["model"].get("gate_logits") if path.is_file() else None
    return int(logits.numel()) if logits is not None else None


def _budget_from_checkpoint(run_dir: Path) -> float | None:
    from bsnc.search.checkpoint import load_checkpoint

    path = run_dir / "ckpt.pt"
    if not path.is_file():
        return None
    value = load_checkpoint(path).get("budget")
    return float(value) if value is not None else None


def _settings(saved: Mapping[str, Any], budget: float | None, cost_name: str) -> dict[str, Any]:
    config = dict(saved.get("config", {}))
    shown = {"network": saved.get("network"), "file": config.pop("file", None)}
    defines = config.pop("defines", {}) or {}
    if defines:
        shown["-D"] = ", ".join(f"{k}={v}" for k, v in defines.items())
    if budget is not None:
        shown["budget"] = f"{config.get('budget')} = {human(budget)} {cost_name}"
    config.pop("budget", None)
    shown.update(config)
    return {k: v for k, v in shown.items() if v is not None}


def architecture_figure(run_dir: Path, out: Path) -> Figure | str:
    """The diagram export would draw for the run's shipped model, or why there is none."""
    from bsnc.codegen.architecture import edge_gammas, kept_edges
    from bsnc.export.draw import draw
    from bsnc.export.exporter import recorded_program
    from bsnc.lang.frontend import network_from_program
    from bsnc.search.checkpoint import load_checkpoint, shipped_checkpoint

    try:
        checkpoint = shipped_checkpoint(run_dir)
        state = load_checkpoint(checkpoint)
        config = state.get("config", {})
        file, program = recorded_program(state, checkpoint)
        network = network_from_program(program, state.get("defines", {}))
    except BsncError as exc:
        return f"no architecture diagram: {exc}"
    logits = state["model"].get("gate_logits")
    gammas = kept = None
    if logits is not None and not config.get("full_network"):

        if tuple(logits.shape) != (network.n_logits,):
            return f"no architecture diagram: {display_path(checkpoint)} does not fit {file}"
        gammas = edge_gammas(network, logits)
        kept = kept_edges(network, logits).tolist()  # what export keeps, as train counts it
    drawn = draw(network, out / "architecture", gammas=gammas, title=f"{network.name}: learned architecture",
                 kept=kept)
    png = out / "architecture.png"
    if drawn.dot_missing or not png.is_file():
        return "no architecture diagram: Graphviz's dot is not installed (wrote architecture.dot only)"
    svg = out / "architecture.svg"
    return Figure("architecture", "The learned architecture", png, svg if svg.is_file() else None)


def sweep_sections(sweep_dir: Path, out: Path) -> list[Section]:
    from bsnc.search.sweep import read_results

    rows = read_results(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    section = Section(f"Sweep {display_path(sweep_dir)}", {"runs": len(rows)})
    figure = sweep_figure(rows, out, f"{sweep_dir.name}: test accuracy against cost")
    if figure is not None:
        section.figures.append(figure)
    else:
        section.notes.append("no finished run with a test accuracy yet: no Pareto figure")
    failed = [r for r in rows if r.get("status") != "done"]
    if failed:
        section.notes.append(f"{len(failed)} run(s) failed: " + "; ".join(f"{r['name']} ({r.get('error')})"
                                                                       for r in failed))
    section.table = rows
    sections = [section]
    for row in rows:
        run_dir = sweep_dir / "runs" / row["name"]
        if (run_dir / "metrics.jsonl").is_file():
            sections.append(run_section(run_dir, out / row["name"]))
    return sections


# --- HTML ---------------------------------------------------------------------------------


def _image(figure: Figure, base: Path) -> str:
    data = base64.b64encode(figure.png.read_bytes()).decode("ascii")
    links = f'<a href="{html.escape(figure.png.relative_to(base).as_posix())}">PNG</a>'
    if figure.svg is not None:
        links += f' · <a href="{html.escape(figure.svg.relative_to(base).as_posix())}">SVG</a>'
    return (f'<figure id="{html.escape(figure.png.relative_to(base).with_suffix("").as_posix())}">'
            f'<img alt="{html.escape(figure.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(figure.title)} ({links})</figcaption></figure>")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = ["name", "budget", "seed", "status", "cost", "val_acc", "test_acc", "epoch", "epochs", "time"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = ""
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            if c in ("val_acc", "test_acc") and isinstance(v, (int, float)):
                v = f"{v * 100:.2f}%"
            elif c == "cost" and isinstance(v, (int, float)):
                v = human(v)
            elif c == "time" and isinstance(v, (int, float)):
                v = f"{v:.0f} s"
            cells.append(f"<td>{html.escape(_value(v) if v is not None else '')}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(sections: Sequence[Section], base: Path) -> str:
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>bsnc report</title><style>",
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}",
             "figure{margin:1em 0}img{max-width:100%}figcaption{font-size:90%;color:#555}",
             "table{border-collapse:collapse;font-size:85%}td,th{border:1px solid #ccc;padding:2px 6px}",
             "dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:85%}",
             ".note{color:#a40}</style></head><body><h1>bsnc report</h1>"]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2><dl>")
        for key, value in section.settings.items():
            parts.append(f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(_value(value))}</dd>")
        parts.append("</dl>")
        if section.table:
            parts.append(_table(section.table))
        for note in section.notes:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
        parts.extend(_image(f, base) for f in section.figures)
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "".join(parts)


def report(paths: Sequence[Path], out: Path) -> tuple[Path, list[Figure]]:
    """Write the figures of every run or sweep in ``paths`` and ``out/report.html``."""
    if not paths:
        raise UsageError("bsnc report: give at least one run or sweep directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-o {out}: cannot write there ({exc.strerror})") from None
    sections: list[Section] = []
    used: set[str] = set()
    from bsnc.search.checkpoint import follow_latest

    for given in paths:
        path = follow_latest(given)
        kind = directory_kind(path)
        stem = fresh_name(given.resolve().name or "run", used, separator="-", first=2)
        if kind == "sweep":
            sections += sweep_sections(path, out / stem)
        else:
            sections.append(run_section(path, out / stem))
    page = out / "report.html"
    atomic_write_text(page, render_html(sections, out))
    return page, [f for s in sections for f in s.figures]
