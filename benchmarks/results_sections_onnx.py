"""The docs/results.md section for `dlopt optimize model.onnx` (an ONNX file made elsewhere as the target)."""

from __future__ import annotations

from typing import Any

from results_kit import Body, Loaded, cell, get, mb, num, section, table, times


@section("optimize_onnx.json", "dlopt optimize on an ONNX file made elsewhere", "benchmarks/optimize_onnx.py",
         "docs/optimize.md")
def optimize_onnx(files: list[Loaded]) -> Body:
    d = files[0].data
    pick, timed = get(d, "pick") or {}, get(d, "retimed") or {}
    p50 = get(timed, "p50_ms") or {}
    lines = [f"{cell(get(d, 'model'))}, {cell(get(d, 'inputs_file'))}: `{cell(get(d, 'command'))}`.", ""]
    lines += table(["pick", "drop (pts)", "size", "pick ms (b1, 1 thread)", "fp32 file on ONNX Runtime ms",
                    "vs fp32 ONNX Runtime", "fp32 IR on OpenVINO ms", "vs fp32 OpenVINO", "study s"],
                   [[get(pick, "label"), num(get(pick, "drop"), 3), mb(get(pick, "size_bytes")),
                     num(get(p50, "pick"), 3), num(get(p50, "fp32 onnxruntime"), 3),
                     times(get(timed, "speedup_vs_fp32_onnxruntime")), num(get(p50, "fp32 openvino"), 3),
                     times(get(timed, "speedup_vs_fp32_openvino")), num(get(d, "study_seconds"), 0)]])
    lines += [f"Judged by {cell(get(d, 'basis'), 300)}. The three files re-timed interleaved in one process "
              f"({num(get(timed, 'rounds'))} rounds of {num(get(timed, 'budget_s_per_round'))} s; medians). "
              f"Left out: {cell('; '.join(f'{k}: {v}' for k, v in (get(d, 'left_out') or {}).items()), 400)}.", ""]
    lines += table(["candidate", "trials (failed)", "median trial ms", "drop (pts)"], _by_candidate(d))
    lines += ["Trial latencies are each trial's own interleaved timing during the study (the machine shared with other "
              "jobs); the pick's figures above are the re-timing.", ""]
    fig = (f"{get(pick, 'label')}: {times(get(timed, 'speedup_vs_fp32_onnxruntime'))} vs the fp32 file on "
           f"ONNX Runtime, {times(get(timed, 'speedup_vs_fp32_openvino'))} vs its fp32 IR on OpenVINO, drop "
           f"{num(get(pick, 'drop'), 3)} pts")
    return Body(lines, [("`dlopt optimize model.onnx` (ResNet-18 from torch.onnx.export)", fig)])


def _by_candidate(d: Any) -> list[list[str]]:
    """One row per candidate the study drew: how often, its median trial latency (timed under the study's load),
    its drop."""
    groups: dict[str, list[dict]] = {}
    for t in get(d, "trials", []) or []:
        groups.setdefault(str(get(t, "label")), []).append(t)
    rows = []
    for label, ts in groups.items():
        ms = sorted(x for t in ts if isinstance(x := get(t, "p50_ms"), (int, float)))
        failed = sum(get(t, "state") != "complete" for t in ts)
        rows.append([label, f"{len(ts)} ({failed})", num(ms[len(ms) // 2] if ms else None, 3),
                     num(next((get(t, "drop") for t in ts if get(t, "drop") is not None), None), 3)])
    return rows


@section("model_sources.json", "Models from where users keep them: Hugging Face folders, timm, ONNX files",
         "benchmarks/model_sources.py", "docs/models.md")
def model_sources(files: list[Loaded]) -> Body:
    d = files[0].data
    hf = get(d, "hf", {}) or {}
    rows = [[kind, *[f"{get(c, (stage, 'status'))} ({num(get(c, (stage, 'seconds')), 0)} s)"
                     for stage in ("export", "int8", "bench")]] for kind, c in hf.items()]
    lines = [f"Hugging Face folders (measured {cell(get(d, 'hf_created'))}): every cell the `dlopt` CLI in a "
             "subprocess, no --input-shape.", ""]
    lines += table(["folder", "export + verify", "int8", "bench"], rows)
    pipe = get(d, ("hfpipe", "distilbert", "pipeline"), {}) or {}
    lines += [f"`{cell(get(pipe, 'command'))}` ({cell(get(d, 'hfpipe_created'))}): {get(pipe, 'status')}, "
              f"{num(get(pipe, 'seconds'), 0)} s; ship pick: {cell(get(pipe, ('pick', 'label')))} "
              f"({cell(get(pipe, ('pick', 'judged_by')), 200)}).", ""]
    timm = get(d, "timm", {}) or {}
    stages = sorted({s for c in timm.values() for s, v in c.items() if isinstance(v, dict) and "status" in v})
    lines += table(["timm model", *stages], [[m, *[str(get(c, (s, "status"))) for s in stages]] for m, c in timm.items()])
    onnx = get(d, ("onnx", "resnet18"), {}) or {}
    lines += [f"A ResNet-18 ONNX file exported by hand ({cell(get(d, 'onnx_created'))}): `dlopt quantize` kept "
              f"{cell(get(onnx, ('int8', 'recipe')))} at {times(get(onnx, ('int8', 'speedup_vs_fp32_b1')))} its "
              f"fp32 file (target 2x); `dlopt verify --reference`: {get(onnx, ('verify', 'status'))}; "
              f"`dlopt optimize` picked {cell(get(onnx, ('optimize', 'pick')))} at "
              f"{times(get(onnx, ('optimize', 'speedup_vs_fp32_file')))} its fp32 file on ONNX Runtime "
              f"({cell(get(onnx, ('optimize', 'stopped')))}).", ""]
    fig = (f"HF folders {num(get(d, 'hf_target.passed'))}/{num(get(d, 'hf_target.of'))}, DistilBERT pipeline pick: "
           f"{'yes' if get(d, 'hfpipe_target.met') else 'no'}, ONNX int8 "
           f"{times(get(onnx, ('int8', 'speedup_vs_fp32_b1')))} its fp32 file")
    return Body(lines, [("Models from Hugging Face folders, timm and ONNX files", fig)])


@section("ov_reader.json", "OpenVINO int8: how the ONNX file is read before NNCF", "benchmarks/ov_reader.py",
         "docs/diagnose.md")
def ov_reader(files: list[Loaded]) -> Body:
    d = files[0].data
    readers = get(d, "readers", []) or []
    rows, heads = [], []
    for r in get(d, "rows", []) or []:
        cells = [f"{num(get(r, ('ms_b1', k, 'p50_ms')), 3)} ms, {num(get(r, ('speedup_vs_fp32', k)), 3)}x fp32, "
                 f"{num(get(r, ('int8', k, 'layers_float')))} layers float" for k in readers]
        rows.append([f"{get(r, 'model')} {num(get(r, 'size'))}px", num(get(r, ("ms_b1", "fp32", "p50_ms")), 3), *cells])
        heads.append(f"{get(r, 'model')} " + " -> ".join(f"{num(get(r, ('speedup_vs_fp32', k)), 3)}x" for k in readers))
    lines = table(["model (random weights)", "fp32 IR ms", *(f"NNCF int8 from {k}" for k in readers)], rows)
    lines += ["Batch 1, one thread, timed interleaved through dlopt's OpenVINO bench loop; layers float: quantizable "
              "layers NNCF left without int8 weights.", ""]
    return Body(lines, [("OpenVINO int8 from Core.read_model -> ov.convert_model (vs fp32 IR, 224 px)",
                         ", ".join(heads))])
