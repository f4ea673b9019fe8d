"""What the torchvision matrix (benchmarks/tv_matrix.py) found, held: upstream limits are exit 4 before the work,
mnasnet's saved state reloads, a conv-only user model gets static int8, deep fp32 exports pass a tolerance that
scales with the output."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from dlopt.core.errors import UnsupportedError
from dlopt.models.registry import build_model
from dlopt.prune.config import PruneConfig
from dlopt.prune.limits import check_structured
from dlopt.prune.model import prune_model
from dlopt.verify.compare import compare
from dlopt.verify.criteria import ElementwiseTolerance

DLOPT = [sys.executable, "-m", "dlopt"]
STRUCTURED = PruneConfig(ratio=0.3, finetune_epochs=0)


def _prune(name: str, size: int) -> tuple[float, str]:
    torch.manual_seed(0)
    model, spec, _ = build_model(name, input_size=size)
    t0 = time.perf_counter()
    with pytest.raises(UnsupportedError) as info:
        prune_model(model, spec, STRUCTURED, (torch.randn(1, 3, size, size),))
    return time.perf_counter() - t0, str(info.value)


def test_shufflenet_prune_is_refused_with_the_limit_and_what_to_do():
    _, msg = _prune("torchvision:shufflenet_v2_x0_5", 64)
    assert "channel shuffle" in msg and "Torch-Pruning" in msg and "--method unstructured" in msg


def test_shufflenet_prune_cli_exits_4_in_one_line(tmp_path):
    proc = subprocess.run([*DLOPT, "prune", "torchvision:shufflenet_v2_x0_5", "--input-size", "32",
                           "--finetune-epochs", "0", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "channel shuffle" in errors[0] and "Traceback" not in proc.stderr


def test_swin_prune_is_refused_before_the_graph_is_built():
    seconds, msg = _prune("torchvision:swin_t", 64)  # unguarded: still in Torch-Pruning after 90 s, > 22 GB at 224
    assert "shifted-window" in msg and "--method unstructured" in msg
    assert seconds < 20, f"refused only after {seconds:.1f} s"


def test_maxvit_is_a_known_limit():
    import torchvision

    with pytest.raises(UnsupportedError, match="MaxViT"):
        check_structured(torchvision.models.maxvit_t())


def test_an_error_inside_torch_pruning_is_exit_4_naming_the_library():
    """Past the pre-check (called directly), shufflenet fails inside Torch-Pruning: still exit 4, not 70."""
    from dlopt.prune.limits import upstream_limits
    from dlopt.prune.structured import prune_structured

    model, _, _ = build_model("torchvision:shufflenet_v2_x0_5", input_size=32)
    limit = r"Torch-Pruning failed on this model \(ZeroDivisionError.*torch_pruning/"
    with pytest.raises(UnsupportedError, match=limit):
        with upstream_limits():
            prune_structured(model, (torch.randn(1, 3, 32, 32),), STRUCTURED)


def test_memory_growth_past_the_budget_stops_with_exit_4():
    """A model kind the pre-check does not know that makes the graph grow (swin_t at 224: past 22 GB) is stopped
    by the watchdog: here a 64 MB budget and a loop that keeps allocating."""
    from dlopt.prune.limits import upstream_limits

    hoard, t0 = [], time.perf_counter()
    with pytest.raises(UnsupportedError, match=r"grew by more than 64 MB .* Torch-Pruning"):
        with upstream_limits(memory_budget=64 * 2**20):
            while time.perf_counter() - t0 < 20 and sum(map(len, hoard)) < 1 << 30:  # bounded even if it never fires
                hoard.append(bytearray(8 * 2**20))
                hoard[-1][::4096] = b"x" * len(range(0, 8 * 2**20, 4096))  # touch the pages: resident
                time.sleep(0.01)
    assert time.perf_counter() - t0 < 10 and sum(map(len, hoard)) < 512 * 2**20


def test_an_error_of_the_model_itself_is_not_called_an_upstream_limit():
    from dlopt.prune.limits import upstream_limits

    with pytest.raises(ValueError):
        with upstream_limits():
            raise ValueError("a bug in dlopt or the model")


def _same(a: nn.Module, b: nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


def test_mnasnet_checkpoint_round_trip_keeps_the_state_versions(tmp_path):
    from dlopt.models.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model, spec, cfg = build_model("torchvision:mnasnet0_5", input_size=64)
    record = save_checkpoint(model, spec, cfg, tmp_path / "model.json")
    assert json.loads(record.read_text())["state_versions"][""] == 2  # MNASNet's own layout version
    _same(model, load_checkpoint(record).model, 64)


@pytest.mark.parametrize("bad", ["2", {"": "2"}, [2]])
def test_a_hostile_state_versions_entry_is_refused_in_one_line(tmp_path, bad):
    from dlopt.core.errors import InputFileError
    from dlopt.models.checkpoint import load_checkpoint, save_checkpoint

    model, spec, cfg = build_model("mlp", tiny=True)
    record = save_checkpoint(model, spec, cfg, tmp_path / "model.json")
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "state_versions": bad}))
    with pytest.raises(InputFileError, match="state_versions"):
        load_checkpoint(record)


def test_pruned_mnasnet_reloads(tmp_path):
    from dlopt.models.checkpoint import load_checkpoint, save_checkpoint
    from dlopt.models.registry import create_model
    from dlopt.models.structure import describe

    torch.manual_seed(0)
    model, spec, cfg = build_model("torchvision:mnasnet0_5", input_size=64)
    pruned, _ = prune_model(model, spec, STRUCTURED, (torch.randn(1, 3, 64, 64),))
    record = save_checkpoint(pruned, spec, cfg, tmp_path / "model.json",
                             extra={"structure": describe(pruned, create_model(spec, cfg))})
    _same(pruned, load_checkpoint(record).model, 64)


def test_mnasnet_weights_file_loads(tmp_path):
    from safetensors.torch import save_model

    from dlopt.models.registry import get_spec, make_model_config
    from dlopt.models.weights import build_with_weights

    torch.manual_seed(1)
    model, spec, cfg = build_model("torchvision:mnasnet0_5", input_size=64)
    save_model(model, str(tmp_path / "w.safetensors"))  # a state dict file: no _metadata in it
    loaded, _, _ = build_with_weights(get_spec(spec.name), make_model_config(spec, {"input_size": 64}),
                                      tmp_path / "w.safetensors")
    _same(model, loaded, 64)


UNET = '''
import torch
from torch import nn


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.down1, self.down2, self.pool = block(3, 8), block(8, 16), nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec, self.head = block(16, 8), nn.Conv2d(8, 3, 1)

    def forward(self, x):
        a = self.down1(x)
        return self.head(self.dec(torch.cat([self.up(self.down2(self.pool(a))), a], 1)))


def build():
    torch.manual_seed(0)
    return UNet()
'''


def test_conv_only_user_model_gets_static_int8_on_random_calibration(tmp_path):
    (tmp_path / "unet.py").write_text(UNET)
    proc = subprocess.run([*DLOPT, "quantize", "unet.py:build", "--input-shape", "3,16,16", "--backend", "onnxruntime",
                           "--calibration-samples", "16", "--max-drop", "100", "--out", "art", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["recipe"]["method"] == "static" and out["layers_int8"] > 0 and out["verified"]
    assert out["calibration"]["source"].startswith("random")
    assert any("calibrated on random inputs" in n and "--inputs" in n for n in out["notes"])


def test_tolerance_scales_with_the_output_rms():
    """Float32 rounding of a logit that cancels to ~0 is the size of the output's scale, not its own (resnet50:
    eager fp32 is 5e-5 from float64): passes at rtol*RMS; an error 10x that still fails."""
    ref = torch.tensor([[3.0, -2.0, 1e-3, 0.5]])
    crit = ElementwiseTolerance(atol=1e-5, rtol=1e-4)
    rms = float(ref.pow(2).mean().sqrt())
    for err, ok in ((0.8e-4 * rms, True), (1e-3 * rms, False)):
        out = ref + torch.tensor([[0.0, 0.0, err, 0.0]])
        stats = compare("logits", ref, out, crit.rtol)
        assert (crit.judge(stats, ref, out) is None) == ok, err
    big = ref + torch.tensor([[3.0 * 2e-4, 0.0, 0.0, 0.0]])  # elements above the RMS keep rtol*|ref|
    assert crit.judge(compare("logits", ref, big, crit.rtol), ref, big) is not None


def test_tiny_output_is_judged_relative_to_its_scale():
    """A 1e-18 output is within atol: judged against its own RMS (an all-zero artifact fails), not waved through."""
    from dlopt.verify.compare import reference_scale

    ref = torch.randn(4, 10) * 1e-18
    crit = ElementwiseTolerance(1e-5, 1e-4)
    assert crit.vacuous(reference_scale("y", [ref], 1e-4)) is None
    assert crit.relative_note(reference_scale("y", [ref], 1e-4)) is not None
    zeros = torch.zeros_like(ref)
    assert crit.judge(compare("y", ref, zeros, crit.rtol), ref, zeros) is not None
    assert crit.judge(compare("y", ref, ref.clone(), crit.rtol), ref, ref.clone()) is None
    assert crit.vacuous(reference_scale("y", [zeros], 1e-4)) is not None  # all zeros: nothing to judge against


if __name__ == "__main__":
    sys.exit(pytest.main([str(Path(__file__))]))
