"""The `bsnc` command. The only place where an error becomes an exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from bsnc.errors import BsncError

BSN_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class _ReportedError(click.ClickException):
    """A bsnc error shown as rendered (file:line:col, quoted line, caret), exit status 1."""

    exit_code = 1

    def __init__(self, error: BsncError):
        super().__init__(error.render())
        self.error = error

    def show(self, file: Any = None) -> None:
        click.echo(self.error.render(), err=True)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BsncError as exc:
            raise _ReportedError(exc) from None


def _parse_defines(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    defines: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE, e.g. -D W=4", ctx=ctx, param=param)
        defines[name.strip()] = value.strip()
    return defines


def defines_option(fn: Callable) -> Callable:
    return click.option(
        "-D", "--define", "defines", multiple=True, metavar="NAME=VALUE", callback=_parse_defines,
        help="Override a network parameter, e.g. -D W=4 -D C=16. Repeatable.",
    )(fn)


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
def check(file: Path, defines: dict[str, str]) -> None:
    """Validate FILE and print a summary of its super network.

    Reports layers, edges (stochastic and fixed), the parameter count of the full network and
    the input and output shapes. Exits 1 with a located message on the first problem.

    \b
    Example:
      bsnc check fabrics/resnet20.bsn
      bsnc check fabrics/cnf.bsn -D W=2 -D C=16 -D size=8
    """
    from bsnc.frontend import load_network
    from bsnc.summary import summary_lines

    network = load_network(file, defines)
    for line in summary_lines(network):
        click.echo(line)


@main.command()
@click.argument("files", nargs=-1, required=True, type=BSN_FILE)
@click.option("--check", "check_only", is_flag=True, help="Only check: exit 1 if a FILE is not in canonical form.")
@click.option("-w", "--write", is_flag=True, help="Rewrite each FILE in place in canonical form.")
def fmt(files: tuple[Path, ...], check_only: bool, write: bool) -> None:
    """Print FILE in canonical form, or check or rewrite FILES.

    Canonical form: four-space indentation, one statement per line, minimal parentheses;
    comments and blank-line groups are kept.

    \b
    Example:
      bsnc fmt fabrics/cnf.bsn
      bsnc fmt --check fabrics/*.bsn
      bsnc fmt -w my_fabric.bsn
    """
    from bsnc.errors import display_path
    from bsnc.files import atomic_write_text
    from bsnc.formatter import format_file
    from bsnc.parser import parse, read_source

    if check_only and write:
        raise click.UsageError("--check and --write exclude each other")
    if not (check_only or write) and len(files) > 1:
        raise click.UsageError(f"got {len(files)} files; give one FILE to print, or use --check or --write")
    unformatted = 0
    for file in files:
        shown = display_path(file)
        text = read_source(file, shown)
        canonical = format_file(parse(text, shown))
        if check_only:
            if canonical != text:
                click.echo(f"{shown}: not in canonical form; run `bsnc fmt -w {shown}`", err=True)
                unformatted += 1
            else:
                click.echo(f"{shown}: canonical")
        elif write:
            if canonical != text:
                atomic_write_text(file, canonical)
                click.echo(f"{shown}: reformatted")
            else:
                click.echo(f"{shown}: already canonical")
        else:
            click.echo(canonical, nl=False)
    if unformatted:
        sys.exit(1)


@main.command("compile")
@click.argument("file", type=BSN_FILE)
@defines_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the module here instead of printing it.")
def compile_command(file: Path, defines: dict[str, str], output: Path | None) -> None:
    """Generate the PyTorch module of FILE's network.

    A network with stochastic edges becomes a module that samples one architecture per
    example (it imports torch and bsnc.runtime); a network whose edges are all fixed becomes a
    plain module that imports only torch. The output is byte-identical across runs.

    \b
    Example:
      bsnc compile fabrics/cnf.bsn -D W=4 -D C=32 -o cnf4.py
      bsnc compile fabrics/resnet20.bsn > resnet20.py
    """
    from bsnc.codegen import generate
    from bsnc.files import atomic_write_text
    from bsnc.frontend import load_network

    network = load_network(file, defines)
    source = generate(network)
    if output is None:
        click.echo(source, nl=False)
        return
    atomic_write_text(output, source)
    stochastic = len(network.stochastic_edges)
    kind = f"{stochastic} stochastic edges" if stochastic else "static, imports only torch"
    click.echo(f"wrote {output}: class {network.name}, {len(network.edges)} edges ({kind})", err=True)


@main.command()
@click.argument("file", type=BSN_FILE)
@defines_option
@click.option("--cost", "costs", multiple=True, metavar="NAME",
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
    from bsnc.cost_report import cost_report
    from bsnc.frontend import load_network

    network = load_network(file, defines)
    click.echo(cost_report(network, list(costs) or ["flops", "params"], mask, by_edge, as_json), nl=False)


@main.command("latency-table")
@click.argument("file", type=BSN_FILE)
@defines_option
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps"]), default="cpu", show_default=True,
              help="Device to time the edges on.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("latency.json"),
              show_default=True, help="Table to write; an existing table of the same device is extended.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size the edges are timed at.")
@click.option("--samples", type=click.IntRange(min=0), default=12, show_default=True,
              help="Random architectures timed end to end to check the table (0: skip the check).")
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True,
              help="Timed runs per edge after warm-up; the median is kept.")
def latency_table(file: Path, defines: dict[str, str], device: str, output: Path, batch_size: int, samples: int,
                  repeats: int) -> None:
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
    from bsnc import latency
    from bsnc.frontend import load_network

    network = load_network(file, defines)
    target = latency.resolve_device(device)
    existing = None
    if output.exists():
        existing = latency.LatencyTable.load(output)
        if existing.batch_size != batch_size:
            raise click.UsageError(f"{output} was timed at batch size {existing.batch_size}; "
                                   f"--batch-size {batch_size} needs another file")
        latency.check_table(existing, output, device)
    table, added = latency.measure_table(network, target, batch_size, existing, repeats=repeats)
    latency.write_table(table, output)
    click.echo(f"wrote {output}: {len(table.entries)} edge signatures ({added} timed now) on {table.device_name}")
    if samples:
        agreement = latency.check_agreement(network, table, target, samples=samples)
        click.echo(f"table vs measured end-to-end latency of {agreement.samples} random architectures: "
                   f"Spearman rank correlation {agreement.spearman:.3f}, "
                   f"mean relative error {agreement.mean_relative_error * 100:.1f}%")


if __name__ == "__main__":
    main()
