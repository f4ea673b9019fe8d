"""The measured width table (dlopt.prune.width_table): widths chosen inside the window by measured time, the
per-machine cache (round trip; corrupt or hostile files ignored with a notice), narrow layers exact."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from dlopt.prune import PruneConfig
from dlopt.prune import width_table as wt
from dlopt.prune.op_calls import Op


class Mlp(nn.Module):
    """Two 128-wide hidden layers (two dependency groups, candidates 80 / 88 / 96 at ratio 0.3), a kept head."""

    def __init__(self, hidden2: int = 128) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(16, 128), nn.Linear(128, hidden2), nn.Linear(hidden2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def _fast_96_then_80(ops: list[Op]) -> dict[str, float]:
    """A fake timer: layer a is fastest with 96 outputs, layer b (reading a at the rule's 88) with 80."""
    fast = {(16, 96), (88, 80)}
    return {op.key: 0.1 if (op.shape[-1], op.out) in fast else 1.0 for op in ops}


def _prune(model: nn.Module, cfg: PruneConfig, shape: tuple[int, ...] = (1, 16)) -> tuple[nn.Module, dict]:
    from dlopt.prune.structured import prune_structured

    info = prune_structured(model, (torch.randn(*shape),), cfg)
    return model, info


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLOPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_measured_fastest_candidate_is_chosen_and_the_model_gets_it(cache, monkeypatch):
    calls: list[list[Op]] = []
    monkeypatch.setattr(wt, "measure_ops", lambda ops, runtime: (calls.append(ops), _fast_96_then_80(ops))[1])
    model, info = _prune(Mlp(), PruneConfig(ratio=0.3))
    assert (model.a.out_features, model.b.out_features) == (96, 80)  # the rule alone keeps 88 / 88
    plan = info["width_plan"]
    assert plan["a"]["candidates_ms"] == {"80": 1.0 + 1.0, "88": 2.0, "96": 0.1 + 1.0}  # a's call + b reading it
    assert plan["a"]["why"].startswith("fastest in the window on onnxruntime at batch 8")
    assert plan["b"]["rule_width"] == 88 and plan["b"]["requested_ratio"] == 0.3
    assert calls and all(op.shape[0] == 8 for op in calls[0])  # timed at the target batch size
    from dlopt.prune.report import explain

    report = explain(info | {"params": {"removed": 0.5}, "macs": {"removed": 0.5}, "ratio": 0.3,
                             "widths": {"before": {"a": {"out": 128}, "b": {"out": 128}},
                                        "after": {"a": {"out": 96}, "b": {"out": 80}}}}, PruneConfig(ratio=0.3))
    row = report["layers"]["a"]
    assert (row["requested_ratio"], row["rule_width"], row["after"], set(row["candidates_ms"])) == \
        (0.3, 88, 96, {"80", "88", "96"})
    assert any("measured latency table" in n and "a 88 -> 96, b 88 -> 80" in n for n in report["notes"])
    assert report["achieved"]["width_table"]["runtime"] == "onnxruntime"
    rule_only = PruneConfig(ratio=0.3, width_table=False)  # the switch: the rule, nothing measured
    calls.clear()
    model, _ = _prune(Mlp(), rule_only)
    assert (model.a.out_features, model.b.out_features, calls) == (88, 88, [])


def test_the_overall_share_stays_near_the_ratio_when_smaller_is_always_faster(cache, monkeypatch):
    monkeypatch.setattr(wt, "measure_ops", lambda ops, runtime: {op.key: float(op.out * op.shape[-1]) for op in ops})
    model, info = _prune(Mlp(), PruneConfig(ratio=0.3))
    kept = model.a.out_features + model.b.out_features
    assert abs(1 - kept / 256 - 0.3) <= wt.OVERALL_SHIFT + 1e-9  # not 80 / 80 (37.5 % removed)
    # inside the budget (174-179 of 256 kept: 176) time is 16a + 88a (a, b reading it) + 88b + 10b (b, the head):
    # a costs more per channel, so a gives up the channels: 80 / 96, where the rule keeps 88 / 88
    assert (model.a.out_features, model.b.out_features) == (80, 96)
    assert any("lowest total time" in info["width_plan"][n]["why"] for n in ("a", "b"))


def test_narrow_layers_keep_the_exact_ratio_and_are_not_timed(cache, monkeypatch):
    timed: list[str] = []
    monkeypatch.setattr(wt, "measure_ops", lambda ops, runtime: (timed.extend(o.key for o in ops),
                                                                 {o.key: 1.0 for o in ops})[1])
    model, info = _prune(Mlp(hidden2=64), PruneConfig(ratio=0.8))  # b: 12.8 of 64, its window holds 8 and 16
    assert model.b.out_features == 12 and "narrow layer" in info["width_plan"]["b"]["why"]
    assert "candidates_ms" not in info["width_plan"]["b"]
    assert timed and "candidates_ms" in info["width_plan"]["a"]  # a (25.6 of 128) was timed
    assert all(k.endswith("|o12") for k in timed if k.startswith("linear|8x") and "|o10" not in k
               and not k.startswith("linear|8x16|"))  # b sized as planned in a's calls
    assert not any(k.startswith(("linear|8x8|o10", "linear|8x16|o10")) for k in timed)  # b's group never timed


def _ops() -> list[Op]:
    return [Op("linear", (8, 64), 40), Op("conv", (8, 3, 8, 8), 16, (3, 3), (1, 1), (1, 1), (1, 1), 1)]


def test_cache_round_trip_serves_the_second_table_without_measuring(tmp_path):
    path, seen = tmp_path / "t.json", []

    def measure(ops):
        seen.append(len(ops))
        return {op.key: 0.5 + i for i, op in enumerate(ops)}

    first = wt.LatencyTable("eager", 8, measure=measure, path=path).times(_ops())
    again = wt.LatencyTable("eager", 8, measure=measure, path=path)
    assert again.times(_ops()) == first and seen == [2]
    assert (again.info.measured, again.info.cached, again.info.notices) == (0, 2, [])
    data = json.loads(path.read_text())
    assert data["schema"] == wt.SCHEMA and data["threads"] == 1 and data["runtime"].startswith("torch-")
    other = wt.LatencyTable("onnxruntime", 8, measure=measure, path=path)  # another runtime's file: not reused
    other.times(_ops())
    assert seen == [2, 2] and "header" in other.info.notices[0]


HOSTILE = {
    "not json": b"\x00\x01{garbage",
    "truncated": b'{"schema": 1, "entries": {"a": 1.',
    "negative time": "HEADER|{\"conv|x\": -1}",
    "nan time": "HEADER|{\"conv|x\": NaN}",
    "string time": "HEADER|{\"conv|x\": \"fast\"}",
    "entries not a dict": "HEADER|[1, 2]",
    "deep nesting": b"[" * 5000 + b"]" * 5000,
    "too big": b" " * (wt.MAX_CACHE_BYTES + 1),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_corrupt_or_hostile_cache_is_ignored_with_a_notice_and_rewritten(tmp_path, kind, capsys):
    path = tmp_path / "t.json"
    body = HOSTILE[kind]
    if isinstance(body, str):
        header = json.dumps(wt._header("eager"))[:-1]
        body = (header + ', "entries": ' + body.split("|", 1)[1] + "}").encode()
    path.write_bytes(body)
    table = wt.LatencyTable("eager", 8, measure=lambda ops: {op.key: 2.0 for op in ops}, path=path)
    assert set(table.times(_ops()).values()) == {2.0}  # measured, not read from the bad file
    assert table.info.notices and "ignored" in table.info.notices[0]
    assert "ignored" in capsys.readouterr().err
    assert len(json.loads(path.read_text())["entries"]) == 2  # rewritten whole and valid


def test_a_cache_that_is_not_a_file_or_cannot_be_written_costs_a_notice_not_the_prune(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    table = wt.LatencyTable("eager", 8, measure=lambda ops: {op.key: 1.0 for op in ops}, path=fifo)
    assert set(table.times(_ops()).values()) == {1.0}  # no hang on the FIFO, no crash
    assert "reads only regular files" in table.info.notices[0]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        table = wt.LatencyTable("eager", 8, measure=lambda ops: {op.key: 1.0 for op in ops}, path=ro / "d" / "t.json")
        assert set(table.times(_ops()).values()) == {1.0}
    finally:
        ro.chmod(0o700)
    assert os.geteuid() == 0 or "not written" in table.info.notices[-1]


def test_the_cache_keeps_at_most_max_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(wt, "MAX_ENTRIES", 3)
    path = tmp_path / "t.json"
    ops = [Op("linear", (8, 16 + i), 8) for i in range(5)]
    wt.LatencyTable("eager", 8, measure=lambda o: {op.key: 1.0 for op in o}, path=path).times(ops)
    assert len(json.loads(path.read_text())["entries"]) == 3


@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_real_timing_of_one_geometry_per_runtime_is_positive_and_small(runtime):
    ops = [Op("conv", (8, 16, 8, 8), c, (3, 3), (1, 1), (1, 1), (1, 1), 1) for c in (16, 24)]
    ms = wt.measure_ops(ops, runtime)
    assert set(ms) == {op.key for op in ops} and all(0 < v < 100 for v in ms.values())


def test_the_parameters_removed_stay_within_param_shift_of_the_rule():
    from dlopt.prune.width_groups import Group
    from dlopt.prune.widths import WidthChoice

    plan = {n: WidthChoice(128, 89.6, 88, "rule") for n in ("x", "y")}
    heavy = Group(("x",), 128, (80, 88, 96), {c: (Op("linear", (8, 16), c), Op("linear", (8, c), 512))
                                              for c in (80, 88, 96)})  # x's readers hold 512 weights per channel
    light = Group(("y",), 128, (80, 88, 96), {c: (Op("linear", (8, 16), c), Op("linear", (8, c), 10))
                                              for c in (80, 88, 96)})
    cost = [{80: 0.1, 88: 1.0, 96: 1.0}, {80: 1.0, 88: 1.0, 96: 0.1}]  # x 80 and y 96: 176 kept, as the rule
    assert wt._within_params(plan, [heavy, light], cost, 0.3, 500_000) == (80, 96)  # ~4,000 moved: 0.8 %
    assert wt._params_moved(plan, [heavy, light], (80, 96)) == -8 * (16 + 1 + 512) + 8 * (16 + 1 + 10)
    assert wt._within_params(plan, [heavy, light], cost, 0.3, 50_000) == (88, 88)  # 8 % of 50,000: the rule


def test_a_runtime_that_cannot_time_a_call_leaves_the_rule_width_and_says_why(cache, monkeypatch):
    def refuse(ops, runtime):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : no kernel")

    monkeypatch.setattr(wt, "measure_ops", refuse)
    model, info = _prune(Mlp(), PruneConfig(ratio=0.3))
    assert (model.a.out_features, model.b.out_features) == (88, 88)  # the rule's widths, the prune done
    assert "not timed on onnxruntime (RuntimeError: [ONNXRuntimeError]" in info["width_plan"]["a"]["why"]
