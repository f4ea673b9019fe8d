"""Depth pruning (dlopt.prune.depth, `dlopt prune --drop-blocks`): residual blocks found from the model itself,
the cheapest removed, the result saved without pickle and rebuilt, and bad requests refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dlopt.core.errors import ConfigError, InputFileError, UnsupportedError
from dlopt.models.checkpoint import load_checkpoint, save_checkpoint
from dlopt.models.registry import create_model, entry_module, list_specs, make_inputs, make_model_config
from dlopt.models.structure import DEPTH_FORMAT, describe
from dlopt.prune import PruneConfig
from dlopt.prune.depth import drop_blocks, residual_blocks
from dlopt.prune.model import prune_model

STRUCTURED = [s for s in list_specs() if s.supports("prune:structured")]


class Residual(nn.Module):
    def __init__(self, width: int, scale: float = 1.0) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
        with torch.no_grad():
            self.branch[2].weight.mul_(scale)
            self.branch[2].bias.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.branch(x))


class TwoBranches(nn.Module):  # same shape in and out, no skip path: not a residual block
    def __init__(self, width: int) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), Residual(16, scale=1.0), TwoBranches(16), nn.ReLU(),
                         Residual(16, scale=0.0), nn.Linear(16, 4))  # after a ReLU a zero branch changes nothing


def test_blocks_are_found_by_their_skip_path_not_their_shape():
    net = _net()
    assert residual_blocks(net, net, (torch.randn(2, 8),)) == ["1", "4"]  # TwoBranches keeps its shape, no skip


def test_torchvision_blocks_found_are_exactly_the_ones_with_a_skip():
    from torchvision.models import mobilenet_v2, resnet18

    mnv2 = mobilenet_v2(num_classes=10).eval()
    want = [f"features.{i}" for i, m in enumerate(mnv2.features) if getattr(m, "use_res_connect", False)]
    assert residual_blocks(mnv2, mnv2, (torch.randn(1, 3, 64, 64),)) == want and len(want) == 10
    r18 = resnet18(num_classes=10).eval()
    want = [f"{n}" for n, m in r18.named_modules() if type(m).__name__ == "BasicBlock" and m.downsample is None]
    assert residual_blocks(r18, r18, (torch.randn(1, 3, 64, 64),)) == want and len(want) == 5


def test_the_block_whose_removal_changes_least_goes_first():
    net = _net()
    info = drop_blocks(net, net, 1, (torch.randn(2, 8),), [(torch.randn(32, 8),)])["blocks"]
    assert info["dropped"] == ["4"] and info["ranking"][0] == {"block": "4", "output_change": 0.0}
    assert isinstance(net[4], nn.Identity) and not isinstance(net[1], nn.Identity)
    with pytest.raises(UnsupportedError, match="has 1 residual block"):  # one left: two cannot go
        drop_blocks(net, net, 2, (torch.randn(2, 8),), [])


def test_a_model_without_residual_blocks_says_so():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(UnsupportedError, match="no residual block to drop"):
        drop_blocks(net, net, 1, (torch.randn(2, 8),), [])


@pytest.mark.parametrize("spec", STRUCTURED, ids=lambda s: s.name)
def test_every_block_found_in_the_zoo_can_go_and_the_model_still_runs(spec):
    cfg = make_model_config(spec, tiny=True)
    torch.manual_seed(0)
    model = create_model(spec, cfg).eval()
    module = entry_module(model, spec)
    example = make_inputs(spec, cfg, 1)
    blocks = residual_blocks(model, module, example)
    if not blocks:
        with pytest.raises(UnsupportedError, match="no residual block"):
            prune_model(model, spec, PruneConfig(ratio=0.0, drop_blocks=1), example)
        return
    with torch.no_grad():
        before = module(*example)
    pruned, info = prune_model(model, spec, PruneConfig(ratio=0.0, drop_blocks=len(blocks)), example)
    assert info["blocks"]["dropped"] == blocks
    with torch.no_grad():
        after = entry_module(pruned, spec)(*example)
    shapes = [t.shape for t in (before if isinstance(before, tuple) else (before,))]
    assert [t.shape for t in (after if isinstance(after, tuple) else (after,))] == shapes
    assert info["params"]["after"] < info["params"]["before"]


def test_depth_and_width_together_save_and_load_without_pickle(tmp_path):
    from dlopt.models.registry import get_spec

    spec = get_spec("resnet18")
    cfg = make_model_config(spec, tiny=True)
    torch.manual_seed(0)
    model = create_model(spec, cfg).eval()
    example = make_inputs(spec, cfg, 2)
    pruned, info = prune_model(model, spec, PruneConfig(ratio=0.5, drop_blocks=1, speedup=False), example)
    structure = describe(pruned, create_model(spec, cfg))
    assert structure["format"] == DEPTH_FORMAT and structure["identities"] == info["blocks"]["dropped"]
    record = save_checkpoint(pruned, spec, cfg, tmp_path / "model.json", extra={"structure": structure})
    loaded = load_checkpoint(record).model
    with torch.no_grad():
        assert torch.equal(loaded(*example), pruned(*example))
    hostile = json.loads(record.read_text())
    hostile["structure"]["identities"] = ["layer9.0"]  # no such module in this architecture
    record.write_text(json.dumps(hostile))
    with pytest.raises(InputFileError, match="does not fit this architecture"):
        load_checkpoint(record)


def test_options_that_cannot_go_together_are_refused():
    with pytest.raises(ConfigError, match="--drop-blocks needs --method structured"):
        PruneConfig(drop_blocks=1, method="unstructured")
    with pytest.raises(ConfigError, match="0 only with --drop-blocks"):
        PruneConfig(ratio=0.0)
    with pytest.raises(ConfigError, match="--target-speedup is not supported"):
        PruneConfig(drop_blocks=1, target_speedup=1.5)
    assert "drop_blocks" not in PruneConfig().to_json()  # a plain prune's config (and cache key) as before
    assert "finetune_default" in PruneConfig(drop_blocks=1).to_json()  # not the key of a 3-epoch depth prune
    assert "finetune_default" not in PruneConfig(drop_blocks=1, finetune_epochs=3).to_json()


def test_cli_drops_blocks_and_reports_them(tmp_path):
    from cli_calls import invoke, one_error

    res = invoke("prune", "resnet18", "--tiny", "--ratio", "0", "--drop-blocks", "1", "--finetune-epochs", "0",
                 "--no-speedup", "--out", str(tmp_path), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["blocks"]["dropped"]) == 1 and out["blocks"]["found"] == 1  # tiny: one block keeps its shape
    assert load_checkpoint(out["record"]).model is not None
    bad = invoke("prune", "mlp", "--tiny", "--drop-blocks", "1", "--out", str(tmp_path))
    assert bad.exit_code != 0 and "no residual block to drop" in one_error(bad)


def test_default_fine_tuning_grows_with_the_share_of_blocks_removed():
    from dlopt.prune.finetune import DEFAULT_EPOCHS, DEPTH_EPOCHS, default_epochs

    assert default_epochs() == default_epochs(0, 10) == DEFAULT_EPOCHS == 3
    assert [default_epochs(n, 10) for n in (3, 5, 8, 10)] == [5, 6, 8, 3 + DEPTH_EPOCHS]  # mobilenet_v2's counts
    assert default_epochs(1, 5) == 5  # ResNet-18: one of 5 blocks


def test_a_trained_run_dropping_blocks_is_fine_tuned_longer_by_default(tmp_path):
    from dlopt.contract.target import TargetOptions
    from dlopt.prune.stage import run_prune
    from dlopt.train import TrainConfig, train

    run = train(TrainConfig(arch="resnet18", tiny=True, epochs=1, limit=32, out=tmp_path, progress=False)).run_dir
    out = run_prune(TargetOptions(name=str(run)), PruneConfig(ratio=0.0, drop_blocks=1, data_limit=16,
                                                              speedup=False))
    assert sum(f["epochs"] for f in out.result["finetune"]) == 9  # tiny resnet18: its one block of one removed
    assert "3, plus 6 for the 1 of 1 residual blocks removed" in out.result["notes"][0]
    asked = run_prune(TargetOptions(name=str(run)), PruneConfig(ratio=0.0, drop_blocks=1, data_limit=16,
                                                                speedup=False, finetune_epochs=2, name="pruned2"))
    assert sum(f["epochs"] for f in asked.result["finetune"]) == 2  # asked for: kept as asked
