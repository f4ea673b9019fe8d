"""`dlopt prune` at its default options: every architecture whose spec declares structured pruning prunes
through the stage (run, report, notes) without an error -- the list comes from the registry."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dlopt.contract.target import TargetOptions
from dlopt.core.errors import ConfigError
from dlopt.models.registry import list_specs
from dlopt.prune import PruneConfig
from dlopt.prune.stage import REPORT, run_prune

STRUCTURED = list_specs(stage="prune:structured")


def test_the_registry_declares_structured_pruning_somewhere():
    assert len(STRUCTURED) >= 2  # the parametrized test below is not vacuous


@pytest.mark.parametrize("spec", STRUCTURED, ids=lambda s: s.name)
def test_default_structured_prune_runs_on_every_declaring_architecture(spec, tmp_path):
    out = run_prune(TargetOptions(name=spec.name, tiny=True, root=tmp_path), PruneConfig(data_limit=32))
    report = json.loads((out.record.parent / REPORT).read_text())
    assert report["params"]["after"] < report["params"]["before"]
    assert report["config"]["round_to"] is None and report["config"]["method"] == "structured"


WIDE = """from torch import nn

class Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = nn.Linear(128, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = self.conv2(self.conv1(x).relu()).relu().mean((2, 3))
        return self.fc2(self.fc1(x).relu())

class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 64, batch_first=True)
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        return self.head(self.gru(x)[0][:, -1])
"""


def _user_model(tmp_path, name, shape):
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config

    path = tmp_path / "user_models.py"
    path.write_text(WIDE)
    spec = get_spec(f"{path}:{name}")
    cfg = make_model_config(spec, input_shape=shape)
    return create_model(spec, cfg), spec, make_inputs(spec, cfg, 1)


def _after(info):
    return {n: w.get("out", w.get("hidden")) for n, w in info["widths"]["after"].items()}


@pytest.mark.parametrize(("round_to", "widths"), [
    (None, {"conv1": 48, "conv2": 88, "fc1": 360}),  # 44.8, 89.6, 358.4 to the NEAREST multiple of 8
    (1, {"conv1": 44, "conv2": 89, "fc1": 358}),  # --round-to 1: today's exact floor(width * 0.7)
    (8, {"conv1": 40, "conv2": 88, "fc1": 352}),  # --round-to 8: rounded down, as Torch-Pruning does
])
def test_kept_widths_by_rounding_mode(tmp_path, round_to, widths):
    from dlopt.prune.model import prune_model
    from dlopt.prune.report import explain

    model, spec, example = _user_model(tmp_path, "Wide", (3, 8, 8))
    cfg = PruneConfig(ratio=0.3, round_to=round_to, width_table=False)  # the rule: test_prune_width_table times
    _, info = prune_model(model, spec, cfg, example)
    assert {k: _after(info)[k] for k in widths} == widths and _after(info)["fc2"] == 10
    report = explain(info, cfg)
    assert abs(report["achieved"]["channels"] - 0.3) <= 0.05  # the share removed stays near the ratio
    assert report["layers"]["fc2"]["why"] == "kept whole: output layer"
    if round_to is None:
        assert "nearest multiple of 16" in report["layers"]["conv1"]["why"] and not report["notes"][:-1]
        assert "nearest multiple of 8 " in report["layers"]["fc1"]["why"]  # 358.4: a wide layer
    if round_to == 1:
        assert "44, 89, 358 are not multiples of 8" in report["notes"][0]


def test_narrow_layers_keep_the_exact_ratio_and_recurrent_layers_follow_the_plan(tmp_path):
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config
    from dlopt.prune.model import prune_model
    from dlopt.prune.report import explain

    spec = get_spec("lenet5")
    mcfg = make_model_config(spec)
    cfg = PruneConfig(ratio=0.3, width_table=False)  # the rule's widths (the measured table may move 64 and 88)
    _, info = prune_model(create_model(spec, mcfg), spec, cfg, make_inputs(spec, mcfg, 1))
    rows = explain(info, cfg)["layers"]
    assert (rows["features.0"]["after"], rows["features.3"]["after"]) == (4, 11)  # 6 and 16 channels: exact
    assert "narrow layer" in rows["features.0"]["why"]
    assert rows["classifier.3"]["after"] == 64  # 84 * 0.7 = 58.8: nearest multiple of 16 (under 64)
    assert rows["classifier.1"]["after"] == 88  # 120 * 0.7 = 84: nearest multiple of 8 (a wide layer)
    model, spec, example = _user_model(tmp_path, "Recurrent", (6, 8))
    _, info = prune_model(model, spec, cfg, example)
    assert info["widths"]["after"]["gru"]["hidden"] == 48  # 44.8: nn.GRU (dlopt's pruner) rounds too


def test_cli_default_prune_explains_widths_and_exact_keeps_the_ratio(tmp_path):
    from typer.testing import CliRunner

    from dlopt.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["prune", "vit", "--tiny", "--limit", "32", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "widths per layer" in res.stdout and "whole attention heads" in res.stdout
    assert "not fine-tuned" in res.stdout  # a fresh model: no training data in the run
    res = runner.invoke(app, ["prune", "mlp", "--tiny", "--exact", "--limit", "32", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["config"]["round_to"] == 1
    res = runner.invoke(app, ["prune", "mlp", "--tiny", "--exact", "--round-to", "8", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "pass one of them" in res.output and "Traceback" not in res.output


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory):
    from dlopt.train import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    return train(TrainConfig(arch="cnn", tiny=True, epochs=1, limit=48, out=root, progress=False)).run_dir


def test_a_trained_run_is_fine_tuned_by_default_and_zero_opts_out(trained_cnn):
    from dlopt.prune.finetune import DEFAULT_EPOCHS

    out = run_prune(TargetOptions(name=str(trained_cnn)), PruneConfig(ratio=0.5, data_limit=32))
    assert sum(f["epochs"] for f in out.result["finetune"]) == DEFAULT_EPOCHS == 3
    assert out.result["metric"]["after_finetune"] is not None
    assert out.result["notes"][0].startswith("fine-tuned 3 epochs on the run's training data by default")
    assert out.result["config"]["finetune_epochs"] is None  # the request is recorded as given
    off = run_prune(TargetOptions(name=str(trained_cnn)), PruneConfig(ratio=0.5, data_limit=32, finetune_epochs=0,
                                                                      name="pruned-nofinetune"))
    assert off.result["finetune"] == [] and off.result["metric"]["after_finetune"] is None
    assert off.result["notes"][0] == "not fine-tuned (--finetune-epochs 0)"


NORMED = """from torch import nn

def build():
    return nn.Sequential(nn.Linear(16, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 10))
"""


def test_layernorm_groups_are_pruned_through_or_kept_with_the_reason(tmp_path):
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config
    from dlopt.models.structure import apply, describe
    from dlopt.prune.model import prune_model

    (tmp_path / "normed.py").write_text(NORMED)
    spec = get_spec(f"{tmp_path / 'normed.py'}:build")
    mcfg = make_model_config(spec, input_shape=(16,))
    model = create_model(spec, mcfg)
    pruned, info = prune_model(model, spec, PruneConfig(ratio=0.3), make_inputs(spec, mcfg, 1))
    assert pruned[0].out_features == pruned[1].normalized_shape[0] == 48 and "0" not in info["kept_layers"]
    rebuilt = apply(create_model(spec, mcfg), describe(pruned, create_model(spec, mcfg)))  # what loading does
    rebuilt.load_state_dict(pruned.state_dict())
    x = make_inputs(spec, mcfg, 2, seed=1)
    torch.testing.assert_close(rebuilt.eval()(*x), pruned(*x))
    vit = get_spec("vit")  # learned position table: the model width is pruned through its LayerNorms
    vcfg = make_model_config(vit, tiny=True)
    _, info = prune_model(create_model(vit, vcfg), vit, PruneConfig(ratio=0.5), make_inputs(vit, vcfg, 1))
    assert info["widths"]["after"]["patch_embedding"]["out"] < info["widths"]["before"]["patch_embedding"]["out"]
    tc = get_spec("transformer_classifier")  # a fixed sinusoidal table the graph cannot resize: kept, with why
    tcfg = make_model_config(tc, tiny=True)
    _, info = prune_model(create_model(tc, tcfg), tc, PruneConfig(ratio=0.5), make_inputs(tc, tcfg, 1))
    whys = set(info["kept_layers"].values())
    assert any(w.startswith("model width (tied to a LayerNorm), kept whole: pruning through it failed") for w in whys)


def _fake_latency(monkeypatch):
    """Latency proportional to the parameter count: the search's stepping logic, without timing noise."""
    from dlopt.prune import speedup

    monkeypatch.setattr(speedup, "speedup", lambda base, cand: (base(), cand()))
    return lambda model: (lambda n=sum(p.numel() for p in model.parameters()): float(n))


def test_target_speedup_steps_until_the_target(tmp_path, monkeypatch):
    from dlopt.prune.speedup import prune_to_speedup

    model, spec, example = _user_model(tmp_path, "Wide", (3, 8, 8))
    cfg = PruneConfig(target_speedup=2.0)
    pruned, info, path = prune_to_speedup(model, spec, cfg, example, _fake_latency(monkeypatch), lambda m: 0.9,
                                          True, None, lambda _m: None)
    assert path[-1]["stopped"] == "target 2x reached" and path[-1]["speedup"] >= 2.0 > path[-2]["speedup"]
    assert [r["step"] for r in path] == list(range(len(path))) and len(path) > 2  # several steps, in order
    assert info["params"]["before"] == sum(p.numel() for p in model.parameters())
    assert info["params"]["after"] == sum(p.numel() for p in pruned.parameters())


def test_target_speedup_stops_at_the_last_model_within_the_budget(tmp_path, monkeypatch):
    from dlopt.prune.speedup import prune_to_speedup

    model, spec, example = _user_model(tmp_path, "Wide", (3, 8, 8))
    full = sum(p.numel() for p in model.parameters())

    def score(m):  # loses 0.6 points per step: step 2 breaks a budget of 1 point
        kept = sum(p.numel() for p in m.parameters()) / full
        return 0.99 if kept == 1 else 0.99 - 0.006 * round(math.log(kept) / math.log(0.64))

    pruned, info, path = prune_to_speedup(model, spec, PruneConfig(target_speedup=50.0), example,
                                          _fake_latency(monkeypatch), score, True, None, lambda _m: None)
    assert path[-1]["step"] == 2 and path[-1]["stopped"].startswith("over the budget")
    assert sum(p.numel() for p in pruned.parameters()) == info["params"]["after"] < full  # step 1's model
    assert path[1]["drop_points"] <= 1.0 < path[2]["drop_points"]


def test_target_speedup_through_the_stage_records_the_path(trained_cnn):
    out = run_prune(TargetOptions(name=str(trained_cnn)),
                    PruneConfig(target_speedup=1.2, target_runtime="eager", finetune_epochs=1, data_limit=32,
                                max_drop=100.0, name="pruned-fast"))
    path = out.result["speedup_path"]
    assert path[0]["step"] == 0 and len(path) >= 2 and all("speedup" in r for r in path)
    assert "stopped" in path[-1] and [f["step"] for f in out.result["finetune"]] == [r["step"] for r in path[1:]]
    assert out.result["notes"][-1].startswith("--target-speedup 1.2 ")  # reached, or NOT reached and why
    with pytest.raises(ConfigError, match="structured"):
        PruneConfig(target_speedup=2.0, method="unstructured")


def test_width_rule_16_for_narrow_8_for_wide_exact_below_16():
    from dlopt.prune.widths import choose

    cfg = PruneConfig(ratio=0.3)
    kept = {w: choose(w, cfg).kept for w in (6, 16, 32, 64, 128, 256, 512)}
    assert kept == {6: 4, 16: 11, 32: 24, 64: 48, 128: 88, 256: 176, 512: 360}  # 32: 16 would remove 50 %
    assert choose(64, PruneConfig(ratio=0.05)).kept == 60  # the nearest multiple (64) would prune nothing: exact
