"""Sections of docs/results.md for the repair work: distillation after pruning, and the int8 truth set.

Each function reads the files its glob claims (parsed JSON, shape not promised: look-ups go through `get`) and
returns the section's Markdown and its headline rows for the README."""

from __future__ import annotations

from results_kit import Body, Loaded, get, num, section, table


@section("distill.json", "Distillation after pruning", "benchmarks/distill.py", "docs/diagnose.md")
def distill(files: list[Loaded]) -> Body:
    d = files[0].data
    rows, wins, cells = [], 0, 0
    for arch, m in (get(d, "models", {}) or {}).items():
        for ratio, s in (get(m, "summary", {}) or {}).items():
            gain = get(s, "gain_points")
            cells += 1
            wins += isinstance(gain, (int, float)) and gain > 0
            rows.append([arch, ratio, num(get(s, "distill_median"), 3), num(get(s, "plain_median"), 3),
                         num(gain, 3)])
    lines = table(["model", "ratio", "distilled (median of 3)", "plain (median of 3)", "points"], rows)
    lines += [f"Fine-tuning: {num(get(d, 'finetune_epochs'))} epochs; {get(d, 'method')}.", ""]
    return Body(lines, [("Distillation after pruning (3 fine-tuning epochs)",
                         f"distilled higher in {wins} of {cells} cells")])


def _ms(speed: dict) -> str:
    """int8 / ONNX Runtime fp32 / OpenVINO fp32 milliseconds at batch 1."""
    return " / ".join(num(get(speed, ("ms_b1", k)), 3) for k in ("int8", "onnxruntime fp32", "openvino fp32"))


@section("truth_set.json", "int8 truth set: torchvision models trained on digits", "benchmarks/truth_set.py",
         "docs/diagnose.md")
def truth_set(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = []
    for name, r in (get(d, "results", {}) or {}).items():
        speed = [get(r, f"speed.{size}", {}) or {} for size in ("64", "224")]
        rows.append([name, get(r, "recipe"), f"{num(get(r, 'accuracy_fp32'), 3)} -> {num(get(r, 'accuracy_int8'), 3)}",
                     num(get(r, "drop_points"), 3), ", ".join(get(r, "kept_float") or []) or "-",
                     _ms(speed[0]), get(speed[0], "ship"), _ms(speed[1]), get(speed[1], "ship")])
    lines = table(["model", "int8 recipe", "test accuracy fp32 -> int8", "drop (points)", "kept in float",
                   "64 px ms: int8 / ORT fp32 / OV fp32", "ship at 64", "224 px ms (same weights)", "ship at 224"],
                  rows)
    lines += [f"Not run: {name}: {why}" for name, why in (get(d, "not_run", {}) or {}).items()]
    lines += [""]
    fig = f"{num(get(d, 'summary.within_1_point'))} of {num(get(d, 'summary.measured'))} measured within 1 point " \
          f"(target >= 7 of 8)"
    return Body(lines, [("int8 truth set (torchvision models on digits)", fig)])


_BASELINES = ("(a) openvino+nncf int8 defaults", "(b) onnxruntime quantize_static defaults",
              "(c) dlopt pipeline ship pick", "fp32 onnx", "fp32 eager")


@section("optimize_targets*.json", "dlopt optimize against single-pass defaults", "benchmarks/optimize_targets.py",
         "docs/optimize.md")
def optimize_targets(files: list[Loaded]) -> Body:
    rows, heads = [], []
    for f in files:
        for m in get(f.data, "models", []) or []:
            r = get(m, "rows", {}) or {}
            pick = get(r, ("optimize pick", "p50_ms"))
            ratios = {k: (get(r, (k, "p50_ms")) / pick if isinstance(pick, (int, float)) and pick
                          and isinstance(get(r, (k, "p50_ms")), (int, float)) else None) for k in _BASELINES}
            best_default = min((v for k, v in ratios.items() if k.startswith(("(a)", "(b)")) and v), default=None)
            size, ft = get(m, "input_size", 64), get(m, "finetune_epochs") or 3
            rows.append([f"{get(m, 'arch')} {size}x{size}", num(ft), get(m, ("pick", "label")), num(pick, 3),
                         num(get(r, ("optimize pick", "accuracy")), 4), num(best_default, 2) + "x",
                         num(ratios["(c) dlopt pipeline ship pick"], 2) + "x", num(ratios["fp32 onnx"], 2) + "x",
                         num(get(m, "study_wall_s"), 0), f.name])
            heads.append(f"{get(m, 'arch')} {size}px ft{ft} {num(best_default, 2)}x")
    lines = table(["model (trained on digits)", "fine-tuning epochs", "pick", "pick ms (b1, 1 thread)",
                   "pick accuracy", "vs best of OV+NNCF / ORT int8 defaults (target 1.5x)",
                   "vs pipeline pick (target 1.2x)", "vs fp32 ONNX Runtime", "study s", "file"], rows)
    lines += ["Every row of a file timed interleaved in one process, batch 1, one thread; accuracy on the run's "
              "test split.", ""]
    return Body(lines, [("`dlopt optimize` pick against OpenVINO+NNCF / ORT int8 defaults",
                         ", ".join(heads) + " (target 1.5x)")])


@section("optimize_kill.json", "dlopt optimize SIGKILLed and resumed", "benchmarks/optimize_kill.py",
         "docs/optimize.md")
def optimize_kill(files: list[Loaded]) -> Body:
    d = files[0].data
    fig = (f"{num(get(d, 'kills'))} kills: {num(get(d, 'lost_trials'))} finished trials lost, "
           f"{num(get(d, 'half_built_files_used'))} half-built files used")
    lines = table(["kills", "with a build staged", "trials lost", "half-built files used", "final trials complete",
                   "wall s"], [[num(get(d, "kills")), num(get(d, "kills_with_a_build_staged")), num(get(d, "lost_trials")),
                               num(get(d, "half_built_files_used")), num(get(d, "final_complete")), num(get(d, "wall_s"), 0)]])
    return Body(lines + [""], [("`dlopt optimize` SIGKILLed 10 times, resumed", fig)])
