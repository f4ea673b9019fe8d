"""`dlopt bench`: latency of every backend and variant, with percentiles, noise, memory and the roofline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.bench.config import Device
from dlopt.cli.common import (  # user model code a record may run (issue 21)
    QUIET,
    ExporterOpt,
    InputShapeOpt,
    InputSizeOpt,
    JsonOpt,
    ModelCodeOpt,
    OutOpt,
    RunOpt,
    SetOpt,
    TinyOpt,
    TrustCodeOpt,
    WeightsOpt,  # --weights for a model built by name (issue 15)
    console,
    debug,
    err_console,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    fmt_speedup,
    note,
    old_spelling,
    parse_shape,
    print_json,
    print_table,
    renamed,
    sig3,
    status,
    verbosity,
)
from dlopt.models.spec import Exporter

TargetArg = Annotated[str | None, typer.Argument(
    help="Architecture name (new run), run directory, or artifact (.onnx/.ts/.pt2); default: the latest run.",
    show_default=False)]
BackendOpt = Annotated[str | None, typer.Option(
    "--backend", help="Comma list of eager, torchscript, compile, onnxruntime, tensorrt, openvino, pt2 (the run's "
                      ".pt2 files); or all. Only these are measured (default: eager, torchscript, compile, "
                      "onnxruntime, openvino, pt2).")]
BatchesOpt = Annotated[str | None, typer.Option("--batch-sizes", metavar="N,N,...", show_default=False,
                                                help="Comma list of batch sizes (default 1,8).")]
OldBatchOpt = Annotated[str | None, old_spelling("--batch-size")]  # the list option's name before issue 18
SeqOpt = Annotated[str | None, typer.Option("--seq-len", help="Comma list of sequence lengths (sequence models).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Threads for torch and ONNX Runtime "
                                                                        "(default: torch's current setting).")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where to run.")]
PathOpt = Annotated[Path | None, typer.Option(dir_okay=False)]


def _pcts(result: dict[str, Any]) -> list[str]:
    """The percentile keys asked for, besides the median (its own column)."""
    asked = result["config"].get("percentiles") or [90, 99]
    return [f"{float(q):g}" for q in asked if float(q) != 50.0]


def _pct_ms(stats: dict[str, Any], key: str) -> float | None:
    legacy = {"90": stats.get("p90_ms"), "99": stats.get("p99_ms")}  # bench.json written before --percentiles
    return (stats.get("percentiles_ms") or {}).get(key, legacy.get(key))


def _row(r: dict[str, Any], pcts: list[str]) -> list[str]:
    s = r["stats"]
    speedup = "noisy" if r.get("speedup_noisy") else fmt_speedup(r.get("speedup_vs_eager"))
    return [r["variant"] + (" *" if r.get("noisy") else ""), _batch(r), fmt_ms(s["median_ms"]),
            *(fmt_ms(_pct_ms(s, k)) for k in pcts), f"{100 * s['iqr_ratio']:.0f}", speedup,
            fmt_rate(r["throughput_per_s"]), str(s["n"]), r["stop"], fmt_bytes(r.get("model_bytes")),
            sig3((r.get("setup_s") or 0) + (r.get("first_call_s") or 0)),
            "-" if r.get("gflops") is None else sig3(r["gflops"]),
            "-" if r.get("pct_peak") is None else f"{r['pct_peak']:.1f}"]


def _batch(r: dict[str, Any]) -> str:
    return str(r["batch_size"]) + (f"x{r['seq_len']}" if r.get("seq_len") else "")


def _render(result: dict[str, Any], path: Path) -> None:
    table = Table(title=f"dlopt bench {result['target']} ({result['device']}, {result['threads']} threads)",
                  title_justify="left", show_edge=False)
    pcts = _pcts(result)
    cols = ("variant", "batch", "median ms", *(f"p{k}" for k in pcts), "IQR %", "vs eager", "items/s", "n", "stop",
            "size", "1st call s", "GFLOP/s", "% peak")  # least useful last: dropped first when narrow
    for c in cols:
        table.add_column(c, justify="left" if c in ("variant", "stop") else "right")
    notes: dict[tuple[str, str], list[str]] = {}
    for r in result["rows"]:
        if r["status"] != "ok":
            colour = "yellow" if r["status"] == "unavailable" else "red"
            table.add_row(r["variant"], _batch(r), f"[{colour}]{r['status']}[/{colour}]")
            names = notes.setdefault((r["status"], r.get("reason", "")), [])
            names += [] if r["variant"] in names else [r["variant"]]
            continue
        table.add_row(*_row(r, pcts))
    print_table(table, keep=("variant", "batch", "median ms", "vs eager", "IQR %", *(f"p{k}" for k in pcts),
                             "items/s"), wrap=("variant",))  # most important first
    if any(r.get("noisy") for r in result["rows"]):
        console.print("[yellow]* noisy:[/yellow] IQR over half the median, so the median cannot be ranked and its "
                      "speed-up is not printed; rerun on a quieter machine or with more --iterations", highlight=False)
    for (status, reason), names in notes.items():
        colour = "yellow" if status == "unavailable" else "red"
        note(f"[{colour}]{', '.join(names)} {status}:[/{colour}] {reason}", highlight=False)
    load, peak = result["loadavg"], result["peak"]
    peak_gflops = peak.get("fp32_gflops")
    note(f"[dim]load average {load['start'][0]:.2f} -> {load['end'][0]:.2f} on {load['cpus']} CPUs "
         f"(other work on the machine widens the spread); fp32 matmul peak "
         f"{'-' if peak_gflops is None else sig3(peak_gflops)} GFLOP/s; vs eager = eager median / median; items/s = "
         f"batch / median; stop: converged (IQR < {100 * result['config']['iqr_target']:g}% of median), budget or "
         f"iterations; mean, min, memory: --json/--csv. Written: {path}[/dim]")
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


def bench_cmd(
    target: TargetArg = None,
    backend: BackendOpt = None,
    batch_sizes: BatchesOpt = None,
    seq_len: SeqOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.CPU,
    budget_s: Annotated[float | None, typer.Option(
        "--budget-s", min=0.01, show_default=False,
        help="Timing budget in seconds per input shape, shared by all variants (default 10). Warm-up is outside "
             "it, and each variant still makes at least 10 timed calls (a note says when that overran it).")] = None,
    iterations: Annotated[int | None, typer.Option(
        "--iterations", min=1, show_default=False,
        help="Instead of the budget: exactly N timed calls per variant (no convergence stop).")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", min=0, show_default=False,
                                               help="Untimed calls after the first, per variant (default 3).")] = None,
    percentiles: Annotated[str | None, typer.Option(
        "--percentiles", metavar="Q,Q,...", show_default=False,
        help="Latency percentiles to report, e.g. 50,90,99,99.9 (default 50,90,99).")] = None,
    exporter: ExporterOpt = Exporter.DYNAMO,
    csv_path: Annotated[Path | None, typer.Option("--csv", dir_okay=False, help="Also write the rows as CSV.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", dir_okay=False, help="Also write a PNG chart.")] = None,
    compare_to: Annotated[Path | None, typer.Option("--compare", dir_okay=False,
                                                    help="An earlier bench.json to show deltas against.")] = None,
    fail_pct: Annotated[float | None, typer.Option("--fail-on-regression", min=0, metavar="PCT",
                                                   help="With --compare: exit 1 if a row is slower by more than "
                                                        "PCT% and by more than the measured noise.")] = None,
    sets: SetOpt = None,
    input_size: InputSizeOpt = None,
    input_shape: InputShapeOpt = None,
    tiny: TinyOpt = False,
    out: OutOpt = Path("artifacts"),
    run: RunOpt = None,
    trust_code: TrustCodeOpt = False,
    model_code: ModelCodeOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    old_batch_size: OldBatchOpt = None,
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", metavar="FILE.npz", show_default=False,
        help="Time on your own inputs: an .npz with one array per model input (named, or arr_0, arr_1...), "
             "samples first; batch B uses the first B samples.")] = None,
) -> None:
    """Benchmark latency across backends and batch sizes, interleaved, with percentiles and the roofline."""
    from dlopt.bench.compare import check_regressions, compare
    from dlopt.bench.config import BenchConfig, check_path_parent, parse_backends, parse_percentiles
    from dlopt.bench.report import load_result, write_csv, write_plot
    from dlopt.bench.runner import bench, check_measurable
    from dlopt.bench.variants import open_source
    from dlopt.contract.target import TargetOptions
    from dlopt.core.errors import ConfigError
    from dlopt.models.options import parse_int_list, parse_sets

    if fail_pct is not None and compare_to is None:
        raise ConfigError("--fail-on-regression needs --compare OLD.json to compare against")
    for flag, p in (("--csv", csv_path), ("--plot", plot)):
        check_path_parent(p, flag)
    if iterations is not None and budget_s is not None:
        raise ConfigError("--iterations fixes the number of calls and --budget-s the time: give one of them")
    from dlopt.data.inputs_file import precheck

    precheck(inputs)  # a missing file fails before a run is made
    old = load_result(compare_to) if compare_to else None
    timing = {k: v for k, v in (("budget_s", budget_s), ("warmup_calls", warmup)) if v is not None}
    batches = renamed(batch_sizes, old_batch_size, "--batch-sizes", "--batch-size", " for lists")
    flag = "--batch-size" if old_batch_size is not None else "--batch-sizes"  # errors name the spelling used
    sizes = parse_int_list("1,8" if batches is None else batches, flag) or (1,)
    cfg = BenchConfig(backends=parse_backends(backend), batch_sizes=sizes,
                      seq_lens=parse_int_list(seq_len, "--seq-len"), threads=threads, device=device,
                      iterations=iterations, percentiles=parse_percentiles(percentiles), onnx_exporter=exporter.value,
                      inputs=str(inputs) if inputs else "", **timing)
    debug(f"bench config: {cfg}")
    opts = TargetOptions(name=target, run=run, root=out, sets=parse_sets(sets) or None, input_size=input_size,
                         input_shape=parse_shape(input_shape), tiny=tiny, weights=weights)
    with status("benchmarking", silent=as_json) as spinner:
        check_measurable(cfg)  # a bench that would measure nothing makes no run
        outcome = bench(open_source(opts), cfg, progress=lambda msg: spinner.update(msg))
    deltas = compare(outcome.result, old) if old else []
    if csv_path:
        write_csv(outcome.result, csv_path)
    if plot:
        write_plot(outcome.result, plot)
    if as_json:
        print_json({**outcome.result, "run": str(outcome.path.parent), "path": str(outcome.path),  # file says "."
                    **({"compare": [d.to_dict() for d in deltas]} if old else {})})
    else:
        _render(outcome.result, outcome.path)
        if old:
            _render_compare(deltas, compare_to)
    if fail_pct is not None:
        check_regressions(deltas, fail_pct)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
