"""The `bsnc` command. The only place where an error becomes an exit code."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from bsnc.cliparams import BsnFile, CostName, DataName, Device, Finite
from bsnc.errors import BsncError
from bsnc.output import NORMAL, VERBOSE, verbosity

BSN_FILE = BsnFile()


class _ReportedError(click.ClickException):
    """A bsnc error shown as rendered (file:line:col, quoted line, caret), exit status 1 (or the
    error's own ``exit_code``, e.g. 3 for a search that found no architecture within budget)."""

    exit_code = 1

    def __init__(self, error: BsncError):
        super().__init__(error.render())
        self.error = error
        self.exit_code = getattr(error, "exit_code", 1)

    def show(self, file: Any = None) -> None:
        click.echo(self.error.render(), err=True)


def _count_option(ctx: click.Context, param: click.Parameter, value: int) -> None:
    ctx.meta[f"bsnc.{param.name}"] = ctx.meta.get(f"bsnc.{param.name}", 0) + value


class _Command(click.Command):
    """A command with -q/--quiet and -v/--verbose, read through `level()` rather than passed to
    the function."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.params += [
            click.Option(["-q", "--quiet"], count=True, expose_value=False, callback=_count_option,
                         help="Say less: only results, warnings and errors (no progress, no notes)."),
            click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_count_option,
                         help="Say more: the command's wall time; train: progress bars even off a terminal."),
        ]

    def invoke(self, ctx: click.Context) -> Any:
        start = time.perf_counter()
        value = super().invoke(ctx)
        if level() >= VERBOSE:
            click.echo(f"bsnc {ctx.info_name}: done in {time.perf_counter() - start:.2f} s", err=True)
        return value


def level() -> int:
    """The verbosity of the running command: QUIET, NORMAL or VERBOSE."""
    ctx = click.get_current_context()
    return verbosity(ctx.meta.get("bsnc.quiet", 0), ctx.meta.get("bsnc.verbose", 0))


def note(message: str) -> None:
    """An informational line on stderr, unless -q."""
    if level() >= NORMAL:
        click.echo(message, err=True)


class _Group(click.Group):
    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        from bsnc.errors import Interrupted
        from bsnc.files import describe

        _tolerant_streams()
        restore = _stop_on_sigterm()
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a full or closed stdout fails here, not at exit
            return result
        except BsncError as exc:
            raise _ReportedError(exc) from None
        except KeyboardInterrupt as stop:
            raise _ReportedError(Interrupted.of(stop)) from None
        except BrokenPipeError:
            _silence_stdout()  # `bsnc ... | head`: the reader has what it wanted
            sys.exit(1)
        except OSError as exc:
            if exc.filename is None:  # a write to stdout or stderr
                _silence_stdout()
                raise _ReportedError(BsncError(f"cannot write the output ({describe(exc)})")) from None
            raise _ReportedError(BsncError(f"{exc.filename}: {describe(exc)}")) from None
        finally:
            restore()


def _stop_on_sigterm() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM stops the command as Ctrl-C does (a
    message, the last checkpoint named, a sweep's trainings stopped too) with exit status 143,
    instead of killing it where it stands. Left alone when something else already handles it."""
    import signal
    import threading

    from bsnc.errors import Terminated

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _tolerant_streams() -> None:
    """A terminal that cannot show a character (PYTHONIOENCODING=ascii) or a file name that is
    not UTF-8 gets an escape sequence instead of a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _parse_defines(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    defines: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE, e.g. -D W=4", ctx=ctx, param=param)
        defines[name.strip()] = value.strip()
    return defines


def _parse_fractions(value: Any, option: str) -> tuple[float, ...]:
    """'0.5,0.75' (or a list from a config file) to fractions in (0, 1)."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        fractions = tuple(float(item) for item in items if str(item).strip())
    except ValueError:
        fractions = ()
    if not fractions or not all(0 < f < 1 for f in fractions):
        raise click.BadParameter(f"{value!r}: expected fractions of the epochs between 0 and 1, e.g. 0.5,0.75",
                                 param_hint=option)
    return fractions


def defines_option(fn: Callable) -> Callable:
    return click.option(
        "-D", "--define", "defines", multiple=True, metavar="NAME=VALUE", callback=_parse_defines,
        help="Override a network parameter, e.g. -D W=4 -D C=16. Repeatable.",
    )(fn)


_PRIMITIVES_HELP = ("Import MODULE (package.module) to register its primitives first. Repeatable. Installed "
                    "packages' entry points of group bsnc.primitives load by themselves.")


def _load_primitives(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    from bsnc import primitives

    primitives.load(values)
    return values


def primitives_option(fn: Callable) -> Callable:
    """`--primitives MODULE`, loaded as the option is read (the command never sees it)."""
    return click.option("--primitives", "primitives", multiple=True, metavar="MODULE", expose_value=False,
                        callback=_load_primitives, help=_PRIMITIVES_HELP)(fn)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="bsnc")
def main() -> None:
    """bsnc: learn neural architectures under a cost budget (Budgeted Super Networks).

    Write a super network in a .bsn file, check it, compile it to PyTorch, train it under a
    budget and export the pruned architecture.

    \b
    Example:
      bsnc check fabrics/cnf_w8.bsn
      bsnc check fabrics/cnf.bsn -D W=4 -D C=16
      bsnc fmt --check fabrics/cnf.bsn
    """


@main.command()
@click.argument("file", type=BSN_FILE)
@defines_option
@primitives_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON for scripts.")
def check(file: Path, defines: dict[str, str], as_json: bool) -> None:
    """Validate FILE and print a summary of its super network.

    Reports layers, edges (stochastic and fixed), the parameter count of the full network and
    the input and output shapes. Exits 1 with a located message on the first problem.

    \b
    Example:
      bsnc check fabrics/resnet20.bsn
      bsnc check fabrics/cnf.bsn -D W=2 -D C=16 -D size=8
    """
    from bsnc.lang.frontend import load_network
    from bsnc.lang.summary import summary_dict, summary_lines

    network = load_network(file, defines)
    if as_json:
        click.echo(json.dumps(summary_dict(network), indent=2))
        return
    for line in summary_lines(network):
        click.echo(line)


@main.command()
@click.argument("files", nargs=-1, required=True, type=BsnFile(stdin=True))
@click.option("--check", "check_only", is_flag=True, help="Only check: exit 1 if a FILE is not in canonical form.")
@click.option("-w", "--write", is_flag=True, help="Rewrite each FILE in place in canonical form.")
def fmt(files: tuple[Path, ...], check_only: bool, write: bool) -> None:
    """Print FILE in canonical form, or check or rewrite FILES. FILE - reads standard input.

    Canonical form: four-space indentation, one statement per line, minimal parentheses;
    comments and blank-line groups are kept.

    \b
    Example:
      bsnc fmt fabrics/cnf.bsn
      bsnc fmt --check fabrics/*.bsn
      bsnc fmt -w my_fabric.bsn
      cat my_fabric.bsn | bsnc fmt -
    """
    from bsnc.errors import display_path
    from bsnc.files import atomic_write_text
    from bsnc.lang.formatter import format_file
    from bsnc.lang.parser import decode_source, parse, read_source

    if check_only and write:
        raise click.UsageError("--check and --write exclude each other")
    if not (check_only or write) and len(files) > 1:
        raise click.UsageError(f"got {len(files)} files; give one FILE to print, or use --check or --write")
    if write and "-" in files:
        raise click.UsageError("--write cannot rewrite standard input (FILE -); print it instead")
    unformatted = 0
    for file in files:
        shown = "<stdin>" if file == "-" else display_path(file)
        text = decode_source(sys.stdin.buffer.read(), shown) if file == "-" else read_source(file, shown)
        canonical = format_file(parse(text, shown))
        if check_only:
            if canonical != text:
                fix = "bsnc fmt - prints it canonical" if file == "-" else f"run `bsnc fmt -w {shlex.quote(shown)}`"
                click.echo(f"{shown}: not in canonical form; {fix}", err=True)
                unformatted += 1
            else:
                note(f"{shown}: canonical")
        elif write:
            if canonical != text:
                atomic_write_text(file, canonical)
                note(f"{shown}: reformatted")
            else:
                note(f"{shown}: already canonical")
        else:
            click.echo(canonical, nl=False)
    if unformatted:
        sys.exit(1)


@main.command("compile")
@click.argument("file", type=BSN_FILE)
@defines_option
@primitives_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the module here instead of printing it.")
@click.option("--force", is_flag=True, help="Overwrite -o even if bsnc did not write it.")
def compile_command(file: Path, defines: dict[str, str], output: Path | None, force: bool) -> None:
    """Generate the PyTorch module of FILE's network.

    A network with stochastic edges becomes a module that samples one architecture per
    example (it imports torch and bsnc.codegen.runtime); a network whose edges are all fixed becomes a
    plain module that imports only torch (and the classes of user primitives, from their packages).
    The output is byte-identical across runs.

    \b
    Example:
      bsnc compile fabrics/cnf.bsn -D W=4 -D C=32 -o cnf4.py
      bsnc compile fabrics/resnet20.bsn > resnet20.py
    """
    from bsnc.codegen.generate import generate
    from bsnc.files import atomic_write_text
    from bsnc.lang.frontend import load_network

    network = load_network(file, defines)
    source = generate(network)
    if output is None:
        click.echo(source, nl=False)
        return
    from bsnc.output import guard_overwrite, record_written

    guard_overwrite([output], force, f"-o {output}")
    atomic_write_text(output, source)
    record_written([output])
    stochastic = len(network.stochastic_edges)
    kind = f"{stochastic} stochastic edges" if stochastic else "static, imports only torch"
    note(f"wrote {output}: class {network.name}, {len(network.edges)} edges ({kind})")


@main.command()
@click.argument("file", type=BSN_FILE)
@defines_option
@primitives_option
@click.option("--cost", "costs", type=CostName(), multiple=True, metavar="NAME",
              help="flops, params, latency:TABLE.json, distributed:n=K, package.module:function or an "
                   "entry point of group bsnc.costs. Repeatable. Default: flops and params.")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='Cost of one architecture: JSON {"edges": {"EDGE KEY": true|false}}.')
@click.option("--by-edge", is_flag=True, help="Also break additive costs down per edge and per layer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def cost(file: Path, defines: dict[str, str], costs: tuple[str, ...], mask: Path | None, by_edge: bool,
         as_json: bool) -> None:
    """Print the costs of FILE's full super network, or of one architecture (--mask).

    \b
    Example:
      bsnc cost fabrics/resnet20.bsn
      bsnc cost fabrics/cnf_w8.bsn --cost flops --cost distributed:n=4 --by-edge
      bsnc cost fabrics/cnf_w8.bsn --mask arch.json --json
    """
    from bsnc.costs.report import cost_report
    from bsnc.lang.frontend import load_network

    network = load_network(file, defines)
    click.echo(cost_report(network, list(costs) or ["flops", "params"], mask, by_edge, as_json), nl=False)


@main.command("latency-table")
@click.argument("file", type=BSN_FILE)
@defines_option
@primitives_option
@click.option("--device", type=Device(auto=False), default="cpu", show_default=True,
              help="Device to time the edges on: cpu, mps, cuda or cuda:N.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("latency.json"),
              show_default=True, help="Table to write; an existing table of the same device is extended.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size the edges are timed at.")
@click.option("--samples", type=click.IntRange(min=0), default=12, show_default=True,
              help="Random architectures timed end to end to check the table (0: skip the check; else at least 2).")
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True,
              help="Timed runs per edge after warm-up; the median is kept.")
@click.option("--channels-last/--no-channels-last", "channels_last", default=False, show_default=True,
              help="Lay image maps out channels-last (NHWC in memory), as a model deployed with "
                   "memory_format=torch.channels_last runs them; default: contiguous, PyTorch's default. "
                   "The table records it.")
def latency_table(file: Path, defines: dict[str, str], device: str, output: Path, batch_size: int, samples: int,
                  repeats: int, channels_last: bool) -> None:
    """Time every edge of FILE on a device and write a latency lookup table.

    Entries are keyed by the edge's signature (op chain and input shape), so a table made for
    one fabric is reused by others that share edges. Then random architectures are timed end to
    end to report how well the table predicts real latency (rank correlation, mean relative
    error): trust the latency cost only as far as these figures allow.

    \b
    Example:
      bsnc latency-table fabrics/resnet_fabric_n3.bsn -o cpu.json
      bsnc cost fabrics/resnet_fabric_n3.bsn --cost latency:cpu.json
    """
    from bsnc import numeric
    from bsnc.costs import latency
    from bsnc.costs.memory import check_fits
    from bsnc.lang.frontend import load_network

    numeric.whole("--batch-size", batch_size, 1, numeric.MAX_BATCH_SIZE)
    numeric.whole("--samples", samples, 0, numeric.MAX_REPEATS)
    if samples == 1:  # checked before any timing: a rank correlation needs two architectures
        raise click.BadParameter("1: expected 0 (no check) or at least 2 (a rank correlation needs two)",
                                 param_hint="'--samples'")
    numeric.whole("--repeats", repeats, 1, numeric.MAX_REPEATS)
    layout = "channels-last" if channels_last else "contiguous"
    network = load_network(file, defines)
    target = latency.resolve_device(device)
    check_fits(network, target, batch_size)
    existing = None
    if output.exists():
        existing = latency.LatencyTable.load(output)
        if existing.batch_size != batch_size:
            raise click.UsageError(f"{output} was timed at batch size {existing.batch_size}; "
                                   f"--batch-size {batch_size} needs another file")
        if existing.layout != layout:
            made = "--channels-last" if existing.layout == "channels-last" else "--no-channels-last (the default)"
            raise click.UsageError(f"{output} holds timings of {existing.layout} maps (made with {made}); "
                                   f"pass the same, or -o another file")
        latency.check_table(existing, output, device)
    from bsnc.output import progress_wanted

    progress = progress_wanted(level())
    table, added = latency.measure_table(network, target, batch_size, existing, progress=progress, repeats=repeats,
                                         layout=layout)
    latency.write_table(table, output)
    click.echo(f"wrote {output}: {len(table.entries)} edge signatures ({added} timed now) on {table.device_name}, "
               f"{table.layout} maps")
    if samples:
        agreement = latency.check_agreement(network, table, target, samples=samples, progress=progress)
        click.echo(f"table vs measured end-to-end latency of {agreement.samples} random architectures: "
                   f"Spearman rank correlation {agreement.spearman:.3f}, "
                   f"mean relative error {agreement.mean_relative_error * 100:.1f}%")


def _load_config_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Values from a TOML, YAML or JSON file (or a run's config.json) become defaults that
    command-line flags override."""
    if value is None:
        return None
    from bsnc.config import option_defaults, read_table

    try:
        data, _ = read_table(value)
    except BsncError as exc:  # not a regular file, or too large
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise click.BadParameter(f"{value}: cannot read it ({exc})", ctx=ctx, param=param) from None
    params = {p.name: p for p in ctx.command.params if p.name and p.expose_value}  # not -q/-v or --config
    known = {name: name for name in params}
    for p in params.values():  # and the long options' own spellings: logger for loggers, lambda for lam
        known.update((opt[2:].replace("-", "_"), p.name) for opt in p.opts if opt.startswith("--"))
    defaults, unknown = option_defaults(data, known)
    if unknown is not None:
        raise click.BadParameter(f"{value}: unknown option {unknown!r}", ctx=ctx, param=param)
    # null (a run's config.json records unset options so) leaves the command's own default
    def spelled(name: str) -> str:  # the option as the docs name it: lambda, not lam
        return next((o[2:] for o in params[name].opts if o.startswith("--")), name)

    defaults = {name: _config_value(params[name], item, f"{value}: option {spelled(name)!r}", ctx, param)
                for name, item in defaults.items() if item is not None}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _config_value(option: click.Parameter, item: Any, where: str, ctx: click.Context, param: click.Parameter) -> Any:
    """A config file's value for ``option``, in the form the command line would give it: a
    scalar as its text (which the option's type then parses as if typed, so 1.5 is no integer,
    true no number and 1e400 no finite one), a list for an option given several times, a bool
    for a flag."""
    def shown(value: Any) -> str:
        return json.dumps(value, default=repr)[:80]

    def scalar(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise click.BadParameter(f"{where}: {shown(value)}; expected a number or a string", ctx=ctx, param=param)
        return str(value)

    if isinstance(option, click.Option) and option.is_flag:
        if not isinstance(item, bool):
            raise click.BadParameter(f"{where}: {shown(item)}; expected true or false", ctx=ctx, param=param)
        return item
    text: Any = [scalar(v) for v in (item if isinstance(item, list) else [item])] if option.multiple else scalar(item)
    try:
        option.type_cast_value(ctx, text)  # parsed again by click; here to name the file when it fails
    except click.BadParameter as exc:
        raise click.BadParameter(f"{where}: {exc.message}", ctx=ctx, param=param) from None
    return text


@main.command()
@click.argument("file", type=BSN_FILE)
@defines_option
@click.option("--primitives", multiple=True, metavar="MODULE", help=_PRIMITIVES_HELP)
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), is_eager=True,
              expose_value=False, callback=_load_config_file,
              help="TOML, YAML or JSON file of option values (e.g. epochs = 30), or a run's config.json to "
                   "replay it; flags override it.")
@click.option("--data", type=DataName(), default="digits", show_default=True, metavar="NAME",
              help="digits (built in), cifar10, cifar100, partlabels, synthetic-seg, fake, imagefolder, "
                   "package.module:function or an entry point of group bsnc.datasets.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the dataset's files are.")
@click.option("--cost", type=CostName(), default="flops", show_default=True, metavar="NAME",
              help="flops, params, latency:TABLE.json, distributed:n=K or package.module:function.")
@click.option("--budget", metavar="VALUE",
              help="Maximum cost, with units (40.9M, 0.27M, 12ms, 6) or as a share of the largest "
                   "architecture's cost (30%; the full super network's without choice groups).")
@click.option("--lambda", "lam", type=Finite(), default=2.0, show_default=True,
              help="Weight of the budget penalty (unitless: the penalty is relative to the budget).")
@click.option("--penalty", type=click.Choice(["hinge", "abs"]), default="hinge", show_default=True,
              help="hinge: max(0, C/budget - 1); abs: |C/budget - 1|.")
@click.option("--inconsistent-penalty", type=Finite(min=0), default=0.0, show_default=True,
              help="Added to the reward of a sampled architecture whose output is not reached, on top of "
                   "the floor derived from lambda and the costs that already makes it worse than any "
                   "architecture that reaches the output.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=None,
              help="Epochs with every edge on and Γ frozen before the search [default: a sixth of --epochs, "
                   "rounded down: the paper's 50 of 300; none under 6 epochs].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="sgd", show_default=True,
              help="Optimiser of the weights (the paper's: SGD with momentum); Γ shares it.")
@click.option("--lr", type=Finite(min=0, min_open=True), default=0.1, show_default=True,
              help="Learning rate of the weights.")
@click.option("--momentum", type=Finite(0, 1, max_open=True), default=0.9, show_default=True,
              help="SGD momentum (unused by adam and adamw).")
@click.option("--weight-decay", type=Finite(min=0), default=1e-4, show_default=True,
              help="Weight decay of the weights (not of Γ).")
@click.option("--schedule", type=click.Choice(["step", "cosine", "constant"]), default="step", show_default=True,
              help="The weights' learning-rate schedule: step divides it by 10 at each --milestones fraction of "
                   "the epochs.")
@click.option("--milestones", default="0.5,0.75", show_default=True, metavar="F,F,...",
              callback=lambda ctx, param, value: _parse_fractions(value, "--milestones"),
              help="With --schedule step: fractions of the epochs where the learning rate drops.")
@click.option("--path-lr", type=Finite(min=0), default=20.0, show_default=True,
              help="Step of the edge probabilities Γ per epoch, whatever the data set's size: a logit of Γ "
                   "moves at most PATH_LR/2 in one epoch (SGD on normalised advantages; not decayed).")
@click.option("--entropy-weight", type=Finite(min=0), default=0.3, show_default=True,
              help="Weight of the entropy of Γ in the search loss, rising from 0 at the first search epoch "
                   "to this at the last: it settles the edges the reward cannot tell apart.")
@click.option("--budget-use", type=Finite(min=0), default=0.1, show_default=True,
              help="Reward, per unit of cost/budget, of an architecture within budget: among equally "
                   "accurate ones the search prefers the one that uses the budget (never one over it).")
@click.option("--budget-anneal", type=click.IntRange(min=0), default=None, metavar="EPOCHS",
              help="Search epochs over which the reward's budget falls geometrically from the largest "
                   "architecture's cost (the full one without choice groups) to "
                   "--budget, so that no single edge cuts the network before the others share the saving; 0 "
                   "or 1: the budget from the start [default: auto, falling at most 1.2x an epoch over at "
                   "most 70% of the search epochs; see docs/search.md].")
@click.option("--idle-penalty", type=Finite(min=0), default=0.01, show_default=True,
              help="Reward cost of each idle edge (switched on but not reaching the output): a tie-break "
                   "that lets Γ decide edges nothing else tells apart.")
@click.option("--device", type=Device(), default="auto", show_default=True,
              help="auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N.")
@click.option("--amp", is_flag=True, help="Mixed precision (autocast + grad scaler) on CUDA.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="Lay image maps out channels-last (NHWC in memory), which convolutions run without "
                   "reordering them: faster on this project's CPU (docs/gpu.md) [default: on for image input "
                   "and bsnc's own primitives; a resumed run keeps its layout].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where config.json, metrics.jsonl, ckpt.pt and best.pt go [default: runs/FILE/N, numbered, "
                   "with runs/FILE/latest pointing at the newest].")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir (default: runs/FILE/latest) from its "
                                             "ckpt.pt.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Data-loading processes.")
@click.option("--full-network", is_flag=True,
              help="Train every edge, with no search and no budget: the static baseline of a sweep.")
@click.option("--logger", "loggers", multiple=True, metavar="NAME",
              help="Also log each epoch to csv (RUN_DIR/metrics.csv) or tensorboard (RUN_DIR/tensorboard); "
                   "repeat or separate with commas. metrics.jsonl is always written.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (and no per-epoch lines).")
def train(file: Path, defines: dict[str, str], primitives: tuple[str, ...], data: str, data_dir: Path | None,
          cost: str, budget: str | None, lam: float, penalty: str, inconsistent_penalty: float, path_lr: float,
          entropy_weight: float, budget_use: float, budget_anneal: int | None, idle_penalty: float, epochs: int, warmup_epochs: int | None,
          batch_size: int, optimizer: str, lr: float, momentum: float, weight_decay: float, schedule: str,
          milestones: tuple[float, ...], device: str, amp: bool, channels_last: bool | None, seed: int, run_dir: Path | None,
          resume: bool, workers: int, full_network: bool, loggers: tuple[str, ...], as_json: bool) -> None:
    """Train FILE's super network under a budget: weights and edge probabilities together.

    Each example samples its own architecture; REINFORCE pushes the edge probabilities
    towards architectures with low loss + lambda * penalty(cost / budget). A network with no
    stochastic edge trains as a plain network. Under torchrun, training is distributed.
    Progress bars show on a terminal only; -q also drops the per-epoch lines.

    Exit status 3 when no epoch's architecture reached the output within the budget (the run's
    files are written; export refuses it unless --allow-over-budget). See docs/search.md.

    \b
    Example:
      bsnc train fabrics/cnf.bsn -D W=4 -D C=16 -D size=8 -D in_channels=1 \\
          --data digits --cost flops --budget 2M --epochs 20
      bsnc train fabrics/resnet_fabric_n3.bsn --data cifar10 --data-dir ~/data \\
          --cost params --budget 0.27M --epochs 300 --warmup-epochs 50
      bsnc train cnf_w8 --config runs/cnf_w8/0/config.json --seed 1
      torchrun --nproc_per_node 2 -m bsnc train fabrics/cnf_w8.bsn --run-dir runs/ddp --data cifar10 ...
    """
    from bsnc import api
    from bsnc.output import NORMAL, progress_wanted
    from bsnc.search.loggers import parse_loggers

    if amp and device == "cpu":
        note("note: --amp needs CUDA; training in float32")
    result = api.train(
        file, data, defines=defines, primitives=list(primitives), data_dir=data_dir, cost=cost, budget=budget,
        lam=lam, penalty=penalty, inconsistent_penalty=inconsistent_penalty, path_lr=path_lr,
        entropy_weight=entropy_weight, budget_use=budget_use, budget_anneal=budget_anneal,
        idle_penalty=idle_penalty, epochs=epochs,
        warmup_epochs=warmup_epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, milestones=milestones, device=device, amp=amp,
        channels_last=channels_last, seed=seed, run_dir=run_dir, resume=resume, workers=workers,
        full_network=full_network, loggers=parse_loggers(loggers),
        progress=progress_wanted(level()), quiet=as_json or level() < NORMAL,
    )
    from bsnc.launch import launch

    if launch().rank != 0:  # under torchrun, rank 0 speaks for all
        return
    if result.budget is not None and result.shipped is None:
        from bsnc.errors import NoArchitectureError

        unwritable = (f"; and export cannot write some of the architectures it chose ({result.unexportable})"
                      if result.unexportable else "")
        last, limit = result.cost.format_apart(result.deterministic_cost, result.budget)
        resolved = f"{limit}; " if "%" in str(budget) else ""  # a share of the largest architecture: its value
        raise NoArchitectureError(
            f"no epoch of this run chose an architecture that reaches the output within the budget {budget} "
            f"({resolved}the last costs {last}){unwritable}; {result.run_dir} has "
            "no best.pt and `bsnc export` refuses it unless --allow-over-budget. Try a larger --budget, more "
            "--epochs (--resume --epochs N extends this run) or a larger --lambda")
    if as_json:
        click.echo(json.dumps(api.run_summary(result), indent=2))
        return
    shipped = f" (best.pt, epoch {result.shipped.epoch})" if result.shipped is not None else ""
    click.echo(f"done: test accuracy {result.test_acc * 100:.2f}%{shipped}, run directory {result.run_dir}")


@main.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR_OR_CKPT")
@click.option("--prune", "do_prune", is_flag=True, required=True,
              help="Keep only the chosen architecture (required: the only export there is).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory [default: RUN_DIR/export].")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='Export this architecture instead: JSON {"edges": {"EDGE KEY": true|false}}.')
@click.option("--keep-threshold", type=Finite(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Keep the gated edges whose probability γ is above this; a choice group "
                                      "keeps its most probable option whatever this is, as evaluation does.")
@click.option("--pick", metavar="best|cheapest|COST", default=None,
              help="Which point of the run's Pareto front of (validation accuracy, cost): best (best.pt, the "
                   "most accurate within budget; the default), cheapest, or the most accurate costing at "
                   "most COST (e.g. 200k). Needs a run directory.")
@click.option("--allow-over-budget", is_flag=True,
              help="Export even an architecture over the run's budget (refused otherwise).")
@click.option("--network", type=BSN_FILE, metavar="FILE",
              help="RUN_DIR_OR_CKPT is a plain state dict from your own training loop: the .bsn file (or shipped "
                   "name) of its model; give its -D values too.")
@defines_option
@click.option("--force", is_flag=True, help="Overwrite files in the output directory that bsnc did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export(run: Path, do_prune: bool, output: Path | None, mask: Path | None, keep_threshold: float,
           pick: str | None, allow_over_budget: bool, network: Path | None, defines: dict[str, str], force: bool,
           as_json: bool) -> None:
    """Export a trained run as a pruned static network.

    Writes NAME_pruned.bsn (the architecture as a static .bsn file), NAME_pruned.pt (its
    weights), NAME_pruned.py (a plain PyTorch module that needs only torch, and the packages of
    any user primitives, named in its first lines) and NAME.dot with
    NAME.svg and NAME.png (a diagram of the super network, kept edges solid). A run directory
    exports best.pt (the best validation accuracy within budget); a run with none is refused
    unless --allow-over-budget (then ckpt.pt, the last epoch). An architecture over the run's
    budget (e.g. from --keep-threshold or --mask) is refused likewise.
    runs/NAME exports its latest run. Weights saved from your own loop (torch.save of a
    bsnc.load model's state_dict) export with --network FILE and the model's -D values.

    \b
    Example:
      bsnc export runs/cnf --prune
      bsnc export runs/cnf --prune --pick cheapest -o small/
      bsnc export runs/cnf/ckpt.pt --prune -o shipped/ --keep-threshold 0.3
      bsnc export own.pt --prune --network cnf_w8 -D C=16 -o shipped/
    """
    from bsnc import api
    from bsnc.output import guard_directory, record_written

    if defines and network is None:
        raise click.UsageError("-D: only with --network (a run remembers its own -D values)")
    if network is None:
        from bsnc.search.checkpoint import find_checkpoint

        target = output if output is not None else find_checkpoint(run, "best.pt").parent / "export"
    elif output is None:
        raise click.UsageError("--network: give -o DIR, where the export of a state dict goes")
    else:
        target = output
    guard_directory(target, force, f"-o {target}")
    if network is not None and (pick is not None or allow_over_budget):
        raise click.UsageError("--pick and --allow-over-budget choose within a run; a state dict (--network) "
                               "has no run to choose from")
    result = api.export(run, target, network=network, defines=defines if network is not None else None, mask=mask,
                        keep_threshold=keep_threshold, pick=pick, allow_over_budget=allow_over_budget)
    record_written(result.files)
    if as_json:
        click.echo(json.dumps({"out_dir": str(result.out_dir), "kept": int(result.active.sum()),
                               "edges": len(result.active), "files": [str(p) for p in result.files],
                               "dot_missing": bool(result.dot_missing)}, indent=2))
        return
    if result.dot_missing:
        note("note: Graphviz's dot is not installed: wrote the .dot file only "
             "(install graphviz to get the SVG and PNG)")
    pruned = result.pruned
    click.echo(f"kept {int(result.active.sum())} of {len(result.active)} edges; wrote:")
    for path in result.files:
        click.echo(f"  {path}")
    bsn = next((p for p in result.files if p.suffix == ".bsn"), None)
    weights = next((p for p in result.files if p.suffix == ".pt"), None)
    if pruned is not None and bsn is not None and weights is not None:
        # Python code: the paths go in as repr() literals, never pasted
        click.echo(f"use it: model = bsnc.load({str(bsn)!r}); "
                   f"model.load_state_dict(torch.load({str(weights)!r}, weights_only=True))")


@main.command()
@click.argument("file", type=BSN_FILE)
@defines_option
@primitives_option
@click.option("--probs", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR_OR_CKPT",
              help="Colour by the edge probabilities of a trained run: kept edges solid, dropped dashed.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output path without suffix [default: the network's name]; writes .dot, .svg and .png.")
@click.option("--keep-threshold", type=Finite(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="With --probs: a gated edge is kept when its probability γ is above this; "
                                      "a choice group keeps its most probable option whatever this is.")
@click.option("--force", is_flag=True, help="Overwrite the .dot, .svg and .png even if bsnc did not write them.")
def draw(file: Path, defines: dict[str, str], probs: Path | None, output: Path | None, keep_threshold: float,
         force: bool) -> None:
    """Draw FILE's super network with Graphviz.

    A fabric is laid out as a grid of columns and scales (from the layout hints `at (x, y)`),
    edges coloured by kind: same scale, down-sampling, up-sampling, skip.

    \b
    Example:
      bsnc draw fabrics/cnf_w8.bsn -o cnf_w8
      bsnc draw fabrics/cnf_w8.bsn --probs runs/cnf_w8
    """
    from bsnc.costs.registry import parse_cost
    from bsnc.export.draw import draw as render
    from bsnc.lang.frontend import load_network

    network = load_network(file, defines)
    gammas = kept = None
    if probs is not None:
        from bsnc.codegen.architecture import kept_edges

        gammas = _gammas_from_run(probs, network, defines)
        kept = kept_edges(network, _logits_from_run(probs), keep_threshold).tolist()
    flops = parse_cost("flops", network).full()
    params = parse_cost("params", network).full()
    from bsnc.lang.summary import human

    title = f"{network.name}: {len(network.edges)} edges, {human(flops)} flops, {human(params)} params (full)"
    from bsnc.output import guard_overwrite, record_written

    stem = output if output is not None else Path(network.name)
    if stem.name in ("", ".", ".."):  # Path("") is ".", and "dir/.." would write dir/...dot
        raise click.BadParameter(f"{str(output)!r}: expected a path ending in a file name (without suffix), "
                                 "such as figures/cnf_w8", param_hint="'-o'")
    guard_overwrite([stem.with_name(f"{stem.name}.{ext}") for ext in ("dot", "svg", "png")], force, f"-o {stem}")
    result = render(network, stem, gammas=gammas, title=title, threshold=keep_threshold, kept=kept)
    record_written([result.dot, *result.rendered])
    if result.dot_missing:
        note("note: Graphviz's dot is not installed: wrote the .dot file only "
             "(install graphviz to get the SVG and PNG)")
    for path in [result.dot, *result.rendered]:
        note(f"wrote {path}")


@main.command()
@click.option("--path", "show_path", is_flag=True, help="Print only the directory that holds them.")
@click.option("--json", "as_json", is_flag=True, help="Print names and paths as JSON.")
def fabrics(show_path: bool, as_json: bool) -> None:
    """List the super networks shipped with bsnc and where they are.

    Every command that takes a .bsn FILE also takes a shipped fabric's name; copy a file from
    here to start your own.

    \b
    Example:
      bsnc fabrics
      bsnc check cnf_w8
      cp "$(bsnc fabrics --path)/cnf.bsn" my_fabric.bsn
    """
    from bsnc.lang.shipped import fabrics_dir, shipped_names

    directory = fabrics_dir()
    if show_path:
        click.echo(str(directory))
        return
    listing = {name: str(directory / f"{name}.bsn") for name in shipped_names()}
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    width = max(len(name) for name in listing)
    for name, path in listing.items():
        click.echo(f"{name.ljust(width)}  {path}")


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]})
@click.argument("file", type=BSN_FILE)
@defines_option
@click.option("--budget", "budgets", required=True, metavar="B1,B2,...",
              help="Budgets, comma-separated, in the cost's units or as shares of the largest architecture's "
                   "cost: 10%,20%,30%.")
@click.option("--seeds", default="0", show_default=True, metavar="S1,S2,...", help="Seeds, comma-separated.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Sweep directory: runs/, results.csv and results.json go there.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs at once on this machine (each gets cores / jobs threads).")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Submit the runs to a Ray cluster instead (e.g. auto, or ray://host:10001); "
                   "needs bsnc[ray] and the same paths on every node.")
@click.option("--no-baseline", is_flag=True, help="Skip the full network trained as a static baseline.")
@click.option("--json", "as_json", is_flag=True, help="Print the results table as JSON.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED, metavar="[TRAIN OPTIONS]...")
def sweep(file: Path, defines: dict[str, str], budgets: str, seeds: str, out: Path, jobs: int,
          ray_address: str | None, no_baseline: bool, as_json: bool, train_args: tuple[str, ...]) -> None:
    """Train FILE once per budget and seed, plus the full network as a baseline.

    Every option after the sweep's own is passed to each `bsnc train` (e.g. --data, --epochs,
    --cost, --lambda). Each run writes OUT/runs/NAME; OUT/results.csv and OUT/results.json hold
    budget, seed, the shipped model's cost, validation and test accuracy, epochs and time. Run
    the same command again to finish an interrupted sweep: finished runs are skipped and
    interrupted ones resume. A failed run is recorded in the table and the others go on; the
    command then exits with status 1.

    \b
    Example:
      bsnc sweep fabrics/cnf.bsn -D W=4 -D C=16 -D size=8 -D in_channels=1 \\
          --budget 10%,20%,30%,50% --seeds 0,1,2 --out sweeps/cnf --jobs 2 \\
          --data digits --epochs 30
      bsnc report sweeps/cnf -o sweeps/cnf/report
    """
    from bsnc.costs.registry import parse_cost
    from bsnc.lang.frontend import load_network
    from bsnc.primitives import load as load_primitives
    from bsnc.search.sweep import SweepSpec, parse_list, parse_seeds, run_sweep
    from bsnc.search.train import parse_budget

    budget_list = parse_list("--budget", budgets)
    options = _check_train_args(file, train_args)
    load_primitives(options.get("primitives") or [])  # the run's own primitives, before its network
    cost = parse_cost(options["cost"], load_network(file, defines))
    for item in budget_list:
        parse_budget(cost, item)  # a budget every run would refuse fails here, before any run
    spec = SweepSpec(file=file.resolve(), defines=defines, budgets=budget_list, seeds=parse_seeds(seeds), out=out,
                     train_args=train_args, baseline=not no_baseline, jobs=jobs, ray_address=ray_address)

    def show(result) -> None:
        figures = "" if result.test_acc is None else f", test {result.test_acc * 100:.2f}%"
        cost = "" if result.cost is None else f", cost {result.cost:,.0f}"
        line = f"{result.name}: {result.status}{cost}{figures}" + (f" ({result.error})" if result.error else "")
        click.echo(line, err=result.status != "done")

    import dataclasses

    results = run_sweep(spec, on_result=None if as_json else show)
    failed = [r for r in results if r.status != "done"]
    if as_json:
        click.echo(json.dumps({"runs": [dataclasses.asdict(r) for r in results]}, indent=2))
    else:
        click.echo(f"wrote {out / 'results.csv'} and {out / 'results.json'} ({len(results)} runs)")
    if failed:
        raise BsncError(f"{len(failed)} of {len(results)} runs failed: "
                        + ", ".join(r.name for r in failed) + f"; their logs are in {out / 'runs'}")


def _check_train_args(file: Path, args: tuple[str, ...]) -> dict[str, Any]:
    """Parse the forwarded options with `bsnc train` itself, so a typo fails before any run."""
    from bsnc.search.sweep import check_train_args

    check_train_args(args)
    try:
        with train.make_context("train", [str(file), *args], parent=click.get_current_context()) as ctx:
            return dict(ctx.params)
    except click.UsageError as exc:
        raise click.UsageError(f"train option: {exc.format_message()}") from None


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                metavar="RUN_OR_SWEEP_DIR...")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the figures (PNG and SVG) and report.html.")
def report(paths: tuple[Path, ...], output: Path) -> None:
    """Figures of runs and sweeps, and one self-contained report.html.

    For a run: loss and accuracy, cost against the budget, H(Γ) and edges kept, a heat map of
    each edge's γ over epochs, and the learned architecture. For a sweep (bsnc sweep's --out):
    test accuracy against cost with the Pareto front and the full-network baseline, then each
    run's figures.

    \b
    Example:
      bsnc report runs/cnf -o runs/cnf/report
      bsnc report sweeps/cnf -o sweeps/cnf/report
    """
    from bsnc.export.report import report as write_report

    page, figures = write_report(list(paths), output)
    click.echo(f"wrote {len(figures)} figures and {page}")


def _gammas_from_run(path: Path, network: Any, defines: dict[str, str]) -> dict[str, float]:

    from bsnc.errors import BsncError
    from bsnc.search.checkpoint import load_checkpoint, shipped_checkpoint

    checkpoint = shipped_checkpoint(path)
    state = load_checkpoint(checkpoint)
    if state.get("network") != network.name or state.get("source_hash") != network.source_hash:
        raise BsncError(f"{checkpoint} was trained on another network or another version of it "
                        f"({state.get('network')}); draw the .bsn file it was trained from")
    if state.get("defines", {}) != defines:
        raise BsncError(f"{checkpoint} was trained with -D {state.get('defines')}; draw with the same overrides")
    logits = state["model"].get("gate_logits")
    if logits is None:
        if state.get("config", {}).get("full_network"):
            raise BsncError(f"{checkpoint} was trained as the full network (--full-network): every edge is on and "
                            "there is no edge probability to draw; draw the network without --probs")
        raise BsncError(f"{checkpoint} holds no edge probabilities: its network has no stochastic edge")
    if tuple(logits.shape) != (network.n_logits,):
        raise BsncError(f"{checkpoint}: damaged checkpoint: {tuple(logits.shape)} edge logits for the "
                        + (f"{network.n_logits} stochastic edges of {network.name}" if network.plain
                           else f"{network.n_logits} gate and option logits of {network.name}"))
    from bsnc.codegen.architecture import edge_gammas

    return edge_gammas(network, logits)


def _logits_from_run(path: Path) -> Any:
    from bsnc.search.checkpoint import load_checkpoint, shipped_checkpoint

    return load_checkpoint(shipped_checkpoint(path))["model"]["gate_logits"]


if __name__ == "__main__":
    main()
