"""`dlopt bench`: latency of every backend and variant, with percentiles, noise, memory and the roofline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.bench.config import Device
from dlopt.cli.common import (
    QUIET,
    ExporterOpt,
    JsonOpt,
    TargetArgs,
    console,
    debug,
    err_console,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    fmt_speedup,
    note,
    old_spelling,
    print_json,
    print_table,
    renamed,
    sig3,
    status,
    verbosity,
)
from dlopt.cli.groups import OUTPUT, grouped, stage_panel
from dlopt.models.spec import Exporter

BENCH, COMPARE = stage_panel("bench"), "Compare"


def _backend_help() -> str:
    """The backends this machine can run, and the others with why not (asked of the runtime records, which look
    for installed modules and a GPU without importing anything)."""
    from dlopt.runtime.formats import BY_BACKEND, why_unavailable_here

    why = {name: why_unavailable_here(name) for name in BY_BACKEND}
    here = [n for n, reason in why.items() if reason is None]
    away = "; ".join(f"{n} ({reason})" for n, reason in why.items() if reason is not None)
    return (f"Comma list of {', '.join(here)} (pt2: the run's .pt2 files), or all. Only these are measured (default: "
            "eager, torchscript, compile, onnxruntime, openvino, pt2)." + (f" Unavailable here: {away}." if away else ""))


TargetArg = Annotated[str | None, typer.Argument(
    help="Architecture name (new run), run directory, or artifact (.onnx/.ts/.pt2); default: the latest run.",
    show_default=False)]
BackendOpt = Annotated[str | None, typer.Option("--backend", metavar="BACKEND,...", rich_help_panel=BENCH,
                                                help=_backend_help())]
BatchesOpt = Annotated[str | None, typer.Option("--batch-sizes", metavar="N,N,...", show_default=False,
                                                rich_help_panel=BENCH, help="Comma list of batch sizes (default 1,8).")]
OldBatchOpt = Annotated[str | None, old_spelling("--batch-size")]  # the list option's name before it was renamed
SeqOpt = Annotated[str | None, typer.Option("--seq-len", metavar="N,N,...", rich_help_panel=BENCH,
                                            help="Comma list of sequence lengths (sequence models).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, rich_help_panel=BENCH, help="Threads for torch "
                                                "and ONNX Runtime (default: torch's current setting).")]
DeviceOpt = Annotated[Device, typer.Option("--device", rich_help_panel=BENCH, help="Where to run.")]


@dataclass(frozen=True)
class BenchArgs:
    """What to measure and how long: the BenchConfig."""

    backend: BackendOpt = None
    batch_sizes: BatchesOpt = None
    seq_len: SeqOpt = None
    threads: ThreadsOpt = None
    device: DeviceOpt = Device.CPU
    budget_s: Annotated[float | None, typer.Option(
        "--budget-s", min=0.01, show_default=False, rich_help_panel=BENCH,
        help="Timing budget in seconds per input shape, shared by all variants (default 10). Warm-up is outside "
             "it; no timed call starts past it, so a slow variant may get fewer than 10 calls (its row says "
             "'budget spent').")] = None
    iterations: Annotated[int | None, typer.Option(
        "--iterations", min=1, show_default=False, rich_help_panel=BENCH,
        help="Instead of the budget: exactly N timed calls per variant (no convergence stop).")] = None
    warmup: Annotated[int | None, typer.Option("--warmup", min=0, show_default=False, rich_help_panel=BENCH,
                                               help="Untimed calls after the first, per variant (default 3).")] = None
    percentiles: Annotated[str | None, typer.Option(
        "--percentiles", metavar="Q,Q,...", show_default=False, rich_help_panel=BENCH,
        help="Latency percentiles to report, e.g. 50,90,99,99.9 (default 50,90,99).")] = None
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", metavar="FILE.npz", show_default=False, rich_help_panel=BENCH,
        help="Time on your own inputs: an .npz with one array per model input (named, or arr_0, arr_1...), "
             "samples first; batch B uses the first B samples.")] = None
    exporter: ExporterOpt = Exporter.DYNAMO
    old_batch_size: OldBatchOpt = None

    def check(self) -> None:
        """Contradictions and a missing --inputs file, before a run is made."""
        from dlopt.core.errors import ConfigError
        from dlopt.data.inputs_file import precheck

        if self.iterations is not None and self.budget_s is not None:
            raise ConfigError("--iterations fixes the number of calls and --budget-s the time: give one of them")
        precheck(self.inputs)

    def config(self) -> Any:
        from dlopt.bench.config import BenchConfig, parse_backends, parse_percentiles
        from dlopt.models.options import parse_int_list

        timing = {k: v for k, v in (("budget_s", self.budget_s), ("warmup_calls", self.warmup)) if v is not None}
        batches = renamed(self.batch_sizes, self.old_batch_size, "--batch-sizes", "--batch-size", " for lists")
        flag = "--batch-size" if self.old_batch_size is not None else "--batch-sizes"  # errors name the spelling used
        sizes = parse_int_list("1,8" if batches is None else batches, flag) or (1,)
        return BenchConfig(backends=parse_backends(self.backend), batch_sizes=sizes,
                           seq_lens=parse_int_list(self.seq_len, "--seq-len"), threads=self.threads,
                           device=self.device, iterations=self.iterations,
                           percentiles=parse_percentiles(self.percentiles), onnx_exporter=self.exporter.value,
                           inputs=str(self.inputs) if self.inputs else "", **timing)


@dataclass(frozen=True)
class BenchFiles:
    """Files beside the table: CSV, a chart, and an earlier bench.json to compare with."""

    csv_path: Annotated[Path | None, typer.Option("--csv", dir_okay=False, rich_help_panel=OUTPUT,
                                                  help="Also write the rows as CSV.")] = None
    plot: Annotated[Path | None, typer.Option("--plot", dir_okay=False, rich_help_panel=OUTPUT,
                                              help="Also write a PNG chart.")] = None
    compare_to: Annotated[Path | None, typer.Option("--compare", dir_okay=False, rich_help_panel=COMPARE,
                                                    help="An earlier bench.json to show deltas against.")] = None
    fail_pct: Annotated[float | None, typer.Option("--fail-on-regression", min=0, metavar="PCT",
                                                   rich_help_panel=COMPARE,
                                                   help="With --compare: exit 1 if a row is slower by more than "
                                                        "PCT% and by more than the measured noise.")] = None

    def check(self) -> None:
        from dlopt.bench.config import check_path_parent
        from dlopt.core.errors import ConfigError

        if self.fail_pct is not None and self.compare_to is None:
            raise ConfigError("--fail-on-regression needs --compare OLD.json to compare against")
        for flag, p in (("--csv", self.csv_path), ("--plot", self.plot)):
            check_path_parent(p, flag)

    def write(self, result: dict[str, Any]) -> None:
        from dlopt.bench.report import write_csv, write_plot

        if self.csv_path:
            write_csv(result, self.csv_path)
        if self.plot:
            write_plot(result, self.plot)


def _pcts(result: dict[str, Any]) -> list[str]:
    """The percentile keys asked for, besides the median (its own column)."""
    asked = result["config"].get("percentiles") or [90, 99]
    return [f"{float(q):g}" for q in asked if float(q) != 50.0]


def _pct_ms(stats: dict[str, Any], key: str) -> float | None:
    legacy = {"90": stats.get("p90_ms"), "99": stats.get("p99_ms")}  # bench.json written before --percentiles
    return (stats.get("percentiles_ms") or {}).get(key, legacy.get(key))


def _speed_column(result: dict[str, Any]) -> str:
    """"vs eager", or "vs fp32 file" for a run without a PyTorch model (its fp32 file on the row's runtime)."""
    return "vs fp32 file" if any(r.get("baseline") for r in result["rows"]) else "vs eager"


def _row(r: dict[str, Any], pcts: list[str]) -> list[str]:
    s = r["stats"]
    ratio = r.get("speedup_vs_eager") if r.get("speedup_vs_eager") is not None else r.get("speedup_vs_baseline")
    speedup = "noisy" if r.get("speedup_noisy") else fmt_speedup(ratio)
    return [r["variant"] + (" *" if r.get("noisy") else ""), _batch(r), fmt_ms(s["median_ms"]),
            *(fmt_ms(_pct_ms(s, k)) for k in pcts), f"{100 * s['iqr_ratio']:.0f}", speedup,
            fmt_rate(r["throughput_per_s"]), _calls(r), r["stop"], fmt_bytes(r.get("model_bytes")),
            sig3((r.get("setup_s") or 0) + (r.get("first_call_s") or 0)),
            "-" if r.get("gflops") is None else sig3(r["gflops"]),
            "-" if r.get("pct_peak") is None else f"{r['pct_peak']:.1f}"]


def _calls(r: dict[str, Any]) -> str:
    """Timed calls; "4/10" for a row the budget cut short of the calls it wanted."""
    return str(r["stats"]["n"]) + (f"/{r['calls_wanted']}" if r.get("calls_wanted") else "")


def _batch(r: dict[str, Any]) -> str:
    return str(r["batch_size"]) + (f"x{r['seq_len']}" if r.get("seq_len") else "")


def _render(result: dict[str, Any], path: Path) -> None:
    table = Table(title=f"dlopt bench {result['target']} ({result['device']}, {result['threads']} threads)",
                  title_justify="left", show_edge=False)
    pcts, speed = _pcts(result), _speed_column(result)
    cols = ("variant", "batch", "median ms", *(f"p{k}" for k in pcts), "IQR %", speed, "items/s", "n", "stop",
            "size", "1st call s", "GFLOP/s", "% peak")  # least useful last: dropped first when narrow
    for c in cols:
        table.add_column(c, justify="left" if c in ("variant", "stop") else "right")
    notes: dict[tuple[str, str], list[str]] = {}
    for r in result["rows"]:
        if r["status"] != "ok":
            colour = "red" if r["status"] == "failed" else "yellow"  # unavailable, or cut by the budget
            table.add_row(r["variant"], _batch(r), f"[{colour}]{r['status']}[/{colour}]")
            names = notes.setdefault((r["status"], r.get("reason", "")), [])
            names += [] if r["variant"] in names else [r["variant"]]
            continue
        table.add_row(*_row(r, pcts))
    print_table(table, keep=("variant", "batch", "median ms", speed, "IQR %", *(f"p{k}" for k in pcts),
                             "items/s"), wrap=("variant",))  # most important first
    if result.get("no_eager"):
        bases = sorted({r["baseline"] for r in result["rows"] if r.get("baseline")})
        instead = f"; {speed} = median of the fp32 file on the row's runtime ({', '.join(bases)}) / median" \
            if bases else ""
        note(f"vs eager: {result['no_eager']}{instead}", highlight=False)
    if any(r.get("noisy") for r in result["rows"]):
        console.print("[yellow]* noisy:[/yellow] IQR over half the median, so the median cannot be ranked and its "
                      "speed-up is not printed; rerun on a quieter machine or with more --iterations", highlight=False)
    for (status, reason), names in notes.items():
        colour = "red" if status == "failed" else "yellow"
        note(f"[{colour}]{', '.join(names)} {status}:[/{colour}] {reason}", highlight=False)
    load, peak = result["loadavg"], result["peak"]
    peak_gflops = peak.get("fp32_gflops")
    ratio = "" if result.get("no_eager") else "vs eager = eager median / median; "  # else said above
    note(f"[dim]load average {load['start'][0]:.2f} -> {load['end'][0]:.2f} on {load['cpus']} CPUs "
         f"(other work on the machine widens the spread); fp32 matmul peak "
         f"{'-' if peak_gflops is None else sig3(peak_gflops)} GFLOP/s; {ratio}items/s = "
         f"batch / median; stop: converged (IQR < {100 * result['config']['iqr_target']:g}% of median), budget or "
         f"budget spent (cut short: n/wanted) or iterations; mean, min, memory: --json/--csv. Written: {path}[/dim]")
    for line in result.get("notes") or [] if verbosity() > QUIET else []:
        err_console.print(f"[yellow]note:[/yellow] {line}", highlight=False, soft_wrap=True)


def _render_compare(deltas: list[Any], old_path: Path) -> None:
    table = Table(title=f"compared with {old_path}", title_justify="left")
    for c in ("variant", "batch", "old ms", "new ms", "delta %", "noise %", "verdict"):
        table.add_column(c, justify="left" if c in ("variant", "verdict") else "right")
    colour = {"regression": "red", "faster": "green", "same": "dim"}
    for d in deltas:
        table.add_row(d.variant, str(d.batch_size), fmt_ms(d.old_ms), fmt_ms(d.new_ms), f"{d.delta_pct:+.1f}",
                      f"{d.noise_pct:.1f}", f"[{colour[d.verdict]}]{d.verdict}[/{colour[d.verdict]}]")
    print_table(table, keep=("variant", "batch", "old ms", "new ms", "delta %", "verdict"), wrap=("variant",))


@grouped
def bench_cmd(target: TargetArg = None, *, args: BenchArgs, model: TargetArgs, files: BenchFiles,
              as_json: JsonOpt = False) -> None:
    """Benchmark latency across backends and batch sizes, interleaved, with percentiles and the roofline."""
    from dlopt.bench.compare import check_regressions, compare
    from dlopt.bench.report import load_result
    from dlopt.bench.runner import bench, check_measurable
    from dlopt.bench.variants import open_source

    files.check()
    args.check()
    old = load_result(files.compare_to) if files.compare_to else None
    cfg = args.config()
    debug(f"bench config: {cfg}")
    opts = model.options(target)
    with status("benchmarking", silent=as_json) as spinner:
        check_measurable(cfg)  # a bench that would measure nothing makes no run
        outcome = bench(open_source(opts), cfg, progress=lambda msg: spinner.update(msg))
    deltas = compare(outcome.result, old) if old else []
    files.write(outcome.result)
    if as_json:
        print_json({**outcome.result, "run": str(outcome.run_dir), "path": str(outcome.report_path),  # file: "."
                    **({"compare": [d.to_dict() for d in deltas]} if old else {})})
    else:
        _render(outcome.result, outcome.report_path)
        from dlopt.core.assumptions import assumptions  # what the timings rest on: weights, input size, classes

        if said := assumptions(outcome.run_dir):
            note(f"[dim]assumed: {said}[/dim]", highlight=False)
        if old:
            _render_compare(deltas, files.compare_to)
    if files.fail_pct is not None:
        check_regressions(deltas, files.fail_pct)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
