"""The ship pick never recommends a file slower than fp32 eager, and says what to do when noise leaves no pick."""

from __future__ import annotations

from dlopt.report.decide import decide


def _row(variant: str, runtime: str, p50: float, speedup: float, noisy: str = "") -> dict:
    return {"variant": variant, "runtime": runtime, "label": f"{variant} / {runtime}",
            "path": "" if runtime == "eager" and variant == "fp32" else f"{variant}/model.{runtime}",
            "latency": {1: {"p50": p50}}, "speedup": {1: speedup}, "iqr": {1: 0.1}, "noisy": noisy,
            "parity": "pass", "metric": 1.0, "metric_source": "evaluation.json"}


def _data(*rows: dict) -> dict:
    return {"run": "/nonexistent", "pareto_batch": 1, "metric": "accuracy", "higher_is_better": True,
            "bench": {"threads": 1}, "rows": list(rows)}


def test_a_file_slower_than_fp32_eager_is_never_the_pick() -> None:
    noisy = "timing too noisy to compare at batch 1: IQR 90% of the median"
    ship = decide(_data(_row("fp32", "eager", 200.0, 1.0, noisy), _row("fp32", "pt2", 400.0, 0.5),
                        _row("int8", "onnxruntime", 2.0, 100.0, noisy)))
    assert ship["pick"] is None
    reasons = {e["label"]: e["reason"] for e in ship["excluded"]}
    assert reasons["fp32 / pt2"].startswith("slower than fp32 eager at batch 1 (0.50x)")
    assert "rerun `dlopt bench RUN --threads 1` on a quieter machine" in ship["rule"]


def test_the_fastest_steady_row_within_budget_is_the_pick() -> None:
    ship = decide(_data(_row("fp32", "eager", 10.0, 1.0), _row("fp32", "onnxruntime", 5.0, 2.0),
                        _row("int8", "onnxruntime", 1.0, 10.0)))
    assert ship["label"] == "int8 / onnxruntime" and ship["pick"]["speedup"] == 10.0


def test_no_speed_up_is_stated_over_a_baseline_too_noisy_to_rank() -> None:
    from dlopt.report.decide import banner

    noisy = "timing too noisy to compare at batch 1: IQR 208% of the median"
    ship = decide(_data(_row("fp32", "eager", 336.0, 1.0, noisy), _row("int8", "onnxruntime", 0.06, 5600.0)))
    assert ship["label"] == "int8 / onnxruntime"
    assert ship["pick"]["speedup"] is None and "IQR 208%" in ship["pick"]["speedup_note"]
    assert "5600" not in banner(ship) and "speed-up vs fp32 eager not stated" in banner(ship)


def test_without_a_metric_the_optimize_pick_counts_when_its_study_verified_it(tmp_path) -> None:
    import json

    from dlopt.core.runs import Run

    report = {"reached": True, "verification": {"passed": True}, "goal": {"max_drop": 1.0},
              "pick": {"verdict": {"drop": 0.4}}, "basis": "agreement with fp32 on random valid inputs"}
    run = Run.create(tmp_path, "mlp", {"arch": "mlp"})
    with run.stage("optimize", {}, owns=("optimized",)) as rec:  # the report as the optimize stage records it
        rec.outputs.append(rec.path("optimized", "optimize_report.json"))
        rec.outputs[-1].write_text(json.dumps(report))
    tmp_path = run.path
    rows = [_row("fp32", "eager", 10.0, 1.0), {**_row("int8", "onnxruntime", 1.0, 10.0), "path": "optimized/model.onnx",
                                               "variant": "optimize", "label": "optimize / onnxruntime"}]
    for r in rows:
        r["metric"] = None
    data = {**_data(*rows), "run": str(tmp_path), "metric": None}
    ship = decide(data)
    assert ship["label"] == "optimize / onnxruntime" and ship["pick"]["judged_by"].startswith("optimize: drop 0.40")
    report["verification"]["passed"] = True
    (tmp_path / "optimized" / "optimize_report.json").write_text(json.dumps({**report, "basis": "edited by hand"}))
    ship = decide(data)  # a report changed after its stage recorded it vouches for nothing
    assert ship["label"] != "optimize / onnxruntime"
    assert "not the one the optimize stage recorded" in {e["label"]: e["reason"]
                                                         for e in ship["excluded"]}["optimize / onnxruntime"]
    with Run.open(tmp_path).stage("optimize", {}, owns=("optimized",)) as rec:  # recorded, but its check failed
        rec.outputs.append(rec.path("optimized", "optimize_report.json"))
        rec.outputs[-1].write_text(json.dumps({**report, "verification": {"passed": False}}))
    reasons = {e["label"]: e["reason"] for e in decide(data)["excluded"]}
    assert "without a passing check" in reasons["optimize / onnxruntime"]
