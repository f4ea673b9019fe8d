"""`dlopt bench`: latency of every backend and variant, with percentiles, noise, memory and the roofline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.bench.config import Device, Exporter
from dlopt.cli.common import (InputSizeOpt, JsonOpt, OutOpt, RunOpt, SetOpt, TinyOpt, console, human,
                              note, print_json, print_table, status)
from dlopt.cli.common import ModelCodeOpt, TrustCodeOpt  # user model code a record may run (issue 21)
from dlopt.cli.common import WeightsOpt  # --weights for a model built by name (issue 15)

TargetArg = Annotated[str | None, typer.Argument(
    help="Architecture name (new run), run directory, or artifact (.onnx/.ts/.pt2); default: the latest run.",
    show_default=False)]
BackendOpt = Annotated[str | None, typer.Option(
    "--backend", help="Comma list of eager, torchscript, compile, onnxruntime, tensorrt; or all. "
                      "[default: eager,torchscript,compile,onnxruntime]")]
BatchesOpt = Annotated[str, typer.Option("--batch-size", help="Comma list of batch sizes.")]
SeqOpt = Annotated[str | None, typer.Option("--seq-len", help="Comma list of sequence lengths (sequence models).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Threads for torch and ONNX Runtime "
                                                                        "(default: torch's current setting).")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where to run.")]
PathOpt = Annotated[Path | None, typer.Option(dir_okay=False)]


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def _render(result: dict[str, Any], path: Path) -> None:
    table = Table(title=f"dlopt bench {result['target']} ({result['device']}, {result['threads']} threads)",
                  title_justify="left")
    cols = ("variant", "batch", "median ms", "p90", "p99", "IQR %", "n", "stop", "items/s", "vs eager", "GFLOP/s",
            "% peak", "1st call s", "size")
    for c in cols:
        table.add_column(c, justify="left" if c in ("variant", "stop") else "right", no_wrap=c == "variant")
    notes: dict[tuple[str, str], list[str]] = {}
    for r in result["rows"]:
        batch = str(r["batch_size"]) + (f"x{r['seq_len']}" if r.get("seq_len") else "")
        if r["status"] != "ok":
            colour = "yellow" if r["status"] == "unavailable" else "red"
            table.add_row(r["variant"], batch, f"[{colour}]{r['status']}[/{colour}]")
            names = notes.setdefault((r["status"], r.get("reason", "")), [])
            names += [] if r["variant"] in names else [r["variant"]]
            continue
        s = r["stats"]
        table.add_row(r["variant"], batch, _fmt(s["median_ms"], ".4g"), _fmt(s["p90_ms"]), _fmt(s["p99_ms"]),
                      _fmt(100 * s["iqr_ratio"], ".1f"), str(s["n"]), r["stop"], _fmt(r["throughput_per_s"], ".4g"),
                      _fmt(r.get("speedup_vs_eager"), ".2f") + "x", _fmt(r.get("gflops")), _fmt(r.get("pct_peak"), ".1f"),
                      _fmt((r.get("setup_s") or 0) + (r.get("first_call_s") or 0)),
                      human(r["model_bytes"]) + "B" if r.get("model_bytes") else "-")
    print_table(table, keep=("variant", "batch", "median ms", "p90", "p99", "IQR %", "vs eager"))
    for (status, reason), names in notes.items():
        colour = "yellow" if status == "unavailable" else "red"
        note(f"[{colour}]{', '.join(names)} {status}:[/{colour}] {reason}", highlight=False)
    load, peak = result["loadavg"], result["peak"]
    note(f"[dim]load average {load['start'][0]:.2f} -> {load['end'][0]:.2f} on {load['cpus']} CPUs "
                  f"(other work on the machine widens the spread); fp32 matmul peak {_fmt(peak.get('fp32_gflops'))} "
                  f"GFLOP/s; vs eager = eager median / median; stop: converged (IQR < "
                  f"{100 * result['config']['iqr_target']:g}% of median) or budget; mean, min, memory: --json/--csv. "
                  f"Written: {path}[/dim]")


def _render_compare(deltas: list[Any], old_path: Path) -> None:
    table = Table(title=f"compared with {old_path}", title_justify="left")
    for c in ("variant", "batch", "old ms", "new ms", "delta %", "noise %", "verdict"):
        table.add_column(c, justify="left" if c in ("variant", "verdict") else "right")
    colour = {"regression": "red", "faster": "green", "same": "dim"}
    for d in deltas:
        table.add_row(d.variant, str(d.batch_size), f"{d.old_ms:.4g}", f"{d.new_ms:.4g}", f"{d.delta_pct:+.1f}",
                      f"{d.noise_pct:.1f}", f"[{colour[d.verdict]}]{d.verdict}[/{colour[d.verdict]}]")
    console.print(table)


def bench_cmd(
    target: TargetArg = None,
    backend: BackendOpt = None,
    batch_size: BatchesOpt = "1,8",
    seq_len: SeqOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.CPU,
    budget_s: Annotated[float, typer.Option("--budget-s", min=0.01, help="Timing budget per input shape, "
                                                                          "shared by all variants.")] = 10.0,
    exporter: Annotated[Exporter, typer.Option(help="ONNX exporter when the run has no .onnx yet.")] = Exporter.DYNAMO,
    csv_path: Annotated[Path | None, typer.Option("--csv", dir_okay=False, help="Also write the rows as CSV.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", dir_okay=False, help="Also write a PNG chart.")] = None,
    compare_to: Annotated[Path | None, typer.Option("--compare", dir_okay=False,
                                                    help="An earlier bench.json to show deltas against.")] = None,
    fail_pct: Annotated[float | None, typer.Option("--fail-on-regression", min=0, metavar="PCT",
                                                   help="With --compare: exit 1 if a row is slower by more than "
                                                        "PCT% and by more than the measured noise.")] = None,
    sets: SetOpt = None,
    input_size: InputSizeOpt = None,
    tiny: TinyOpt = False,
    out: OutOpt = Path("artifacts"),
    run: RunOpt = None,
    trust_code: TrustCodeOpt = False,
    model_code: ModelCodeOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark latency across backends and batch sizes, interleaved, with percentiles and the roofline."""
    from dlopt.bench.compare import check_regressions, compare
    from dlopt.bench.config import BenchConfig, check_path_parent, parse_backends
    from dlopt.options import parse_int_list
    from dlopt.bench.report import load_result, write_csv, write_plot
    from dlopt.bench.runner import bench
    from dlopt.errors import ConfigError
    from dlopt.options import parse_sets
    from dlopt.target import TargetOptions

    if fail_pct is not None and compare_to is None:
        raise ConfigError("--fail-on-regression needs --compare OLD.json to compare against")
    for flag, p in (("--csv", csv_path), ("--plot", plot)):
        check_path_parent(p, flag)
    old = load_result(compare_to) if compare_to else None
    cfg = BenchConfig(backends=parse_backends(backend), batch_sizes=parse_int_list(batch_size, "--batch-size") or (1,),
                      seq_lens=parse_int_list(seq_len, "--seq-len"), threads=threads, device=device, budget_s=budget_s,
                      onnx_exporter=exporter.value)
    opts = TargetOptions(name=target, run=run, root=out, sets=parse_sets(sets) or None, input_size=input_size, tiny=tiny,
                         weights=weights)
    with status("benchmarking", silent=as_json) as spinner:
        outcome = bench(opts, cfg, progress=lambda msg: spinner.update(msg))
    deltas = compare(outcome.result, old) if old else []
    if csv_path:
        write_csv(outcome.result, csv_path)
    if plot:
        write_plot(outcome.result, plot)
    if as_json:
        print_json({**outcome.result, "path": str(outcome.path),
                    **({"compare": [d.to_dict() for d in deltas]} if old else {})})
    else:
        _render(outcome.result, outcome.path)
        if old:
            _render_compare(deltas, compare_to)
    if fail_pct is not None:
        check_regressions(deltas, fail_pct)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
