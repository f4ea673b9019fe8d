"""`--target-speedup` draws its latency / accuracy path: `<variant>/speedup_path.png`, listed in the report, one
point per step (the data drawn is checked, not the pixels), the target and the budget as lines."""

from __future__ import annotations

import json

import pytest

from dlopt.prune import PruneConfig

PATH = [{"step": 0, "channels_kept": 1.0, "speedup": 1.0, "metric": 0.98},
        {"step": 1, "channels_kept": 0.8, "base_ms": 10.0, "ms": 6.0, "speedup": 1.667, "metric": 0.975,
         "drop_points": 0.5},
        {"step": 2, "channels_kept": 0.64, "base_ms": 10.0, "ms": 4.5, "speedup": 2.222, "metric": 0.96,
         "drop_points": 2.0, "stopped": "over the budget (--max-drop 1): kept step 1"}]


def _xy(line):
    return [float(v) for v in line.get_xdata()], [float(v) for v in line.get_ydata()]


def test_the_plot_draws_one_point_per_step_with_target_and_budget_lines():
    import matplotlib.pyplot as plt

    from dlopt.prune.plots import draw, path_series

    cfg = PruneConfig(target_speedup=2.5, max_drop=1.0)
    series = path_series(cfg, PATH)
    fig = draw(series, cfg, "accuracy")
    try:
        left, right = fig.axes
        path_line = left.lines[0]
        assert _xy(path_line) == ([1.0, 1.667, 2.222], [0.98, 0.975, 0.96])  # one point per step, in order
        crosses = [ln for ln in left.lines if ln.get_marker() == "x"]
        assert [_xy(ln) for ln in crosses] == [([2.222], [0.96])]  # the step over the budget, marked
        vertical = [ln for ln in left.lines if len(set(ln.get_xdata())) == 1 and ln.get_linestyle() == "--"]
        assert [_xy(ln)[0][0] for ln in vertical] == [2.5]  # the target
        budget = [ln for ln in left.lines if ln.get_linestyle() == ":"]
        assert [round(_xy(ln)[1][0], 6) for ln in budget] == [0.97]  # 0.98 - 1 point
        pruned = [ln for ln in right.lines if ln.get_label() == "pruned"][0]
        assert _xy(pruned) == ([1.0, 2.0], [6.0, 4.5])  # measured latency of each timed step
    finally:
        plt.close(fig)


def test_lower_is_better_budget_and_no_metric():
    from dlopt.prune.plots import path_series

    cfg = PruneConfig(target_speedup=2.0, max_drop=5.0)
    low = [{**r, "metric": m} for r, m in zip(PATH, (0.2, 0.205, 0.3), strict=True)]
    assert path_series(cfg, low, higher_is_better=False).budget == pytest.approx(0.21)  # 5 % above 0.2
    none = [{**r, "metric": None} for r in PATH]
    assert path_series(cfg, none).budget is None and path_series(cfg, none).steps == (0, 1, 2)


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory):
    from dlopt.train import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    return train(TrainConfig(arch="cnn", tiny=True, epochs=1, limit=48, out=root, progress=False)).run_dir


def test_the_stage_writes_and_lists_the_png_with_one_point_per_step(trained_cnn, monkeypatch):
    from dlopt.contract.target import TargetOptions
    from dlopt.prune import plots, speedup
    from dlopt.prune.stage import REPORT, run_prune

    # latency proportional to the parameter count: the steps are deterministic, no timing noise
    monkeypatch.setattr(speedup, "speedup", lambda base, cand: (base(), cand()))
    monkeypatch.setattr(speedup, "timer_for", lambda *a: (lambda m: (lambda n=sum(
        p.numel() for p in m.parameters()): float(n))))
    drawn = []
    real_draw = plots.draw

    def spy(series, cfg, name):
        fig = real_draw(series, cfg, name)
        drawn.append(_xy(fig.axes[0].lines[0]))
        return fig

    monkeypatch.setattr(plots, "draw", spy)
    out = run_prune(TargetOptions(name=str(trained_cnn)),
                    PruneConfig(target_speedup=3.0, finetune_epochs=1, data_limit=32, max_drop=100.0))
    variant = out.record.parent
    report = json.loads((variant / REPORT).read_text())
    assert report["speedup_plot"] == "speedup_path.png" and "plotted in speedup_path.png" in report["notes"][-1]
    png = (variant / report["speedup_plot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    from PIL import Image

    with Image.open(variant / "speedup_path.png") as img:
        img.verify()
    steps = report["speedup_path"]
    assert len(steps) >= 3  # several steps before 3x
    assert drawn == [([r["speedup"] for r in steps], [r["metric"] for r in steps])]  # one point per step
    manifest = json.loads((out.run_dir / "manifest.json").read_text())
    outputs = json.dumps(manifest)
    assert "speedup_path.png" in outputs  # recorded among the stage's outputs


def test_a_plain_prune_draws_no_path(trained_cnn):
    from dlopt.contract.target import TargetOptions
    from dlopt.prune.stage import REPORT, run_prune

    out = run_prune(TargetOptions(name=str(trained_cnn)), PruneConfig(finetune_epochs=0, name="plain"))
    report = json.loads((out.record.parent / REPORT).read_text())
    assert "speedup_plot" not in report and "speedup_path" not in report
    assert not (out.record.parent / "speedup_path.png").exists()
