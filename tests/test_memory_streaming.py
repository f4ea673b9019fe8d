"""Bounded memory: data is kept at its source size and converted a batch at a time; hostile data files are
refused with one line. benchmarks/memory_peak.py measures the resident peaks of the real commands."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()
SIDE = 224
RESIZED_SPLIT_BYTES = 269 * 3 * SIDE * SIDE * 4  # the smallest digits split (val) at 3x224x224: 162 MB


@pytest.fixture(scope="module")
def evaluator():
    """resnet18 at 224 x 224 on digits: the data and training family only (no model is built)."""
    from dlopt.models.registry import get_spec, make_model_config
    from dlopt.tasks.evaluator import evaluator_for

    spec = get_spec("resnet18")
    return evaluator_for(None, spec, make_model_config(spec, {"input_size": SIDE}))


def _tensor_bytes(obj: object, seen: set[int] | None = None, depth: int = 0) -> int:
    """Bytes of every tensor / array reachable from obj's attributes, closures and containers (each counted once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    else:
        children = list(getattr(obj, "__dict__", {}).values())
        closure = getattr(obj, "__closure__", None) or ()
        children += [c.cell_contents for c in closure]
    return sum(_tensor_bytes(c, seen, depth + 1) for c in children)


@pytest.fixture
def resized_batches(monkeypatch) -> list[int]:
    """The row count of every batch images.convert resizes (a whole split resized at once shows up here)."""
    import dlopt.data.images as images

    sizes: list[int] = []
    real = images.convert

    def counting(base, geom):
        sizes.append(len(base))
        return real(base, geom)

    monkeypatch.setattr(images, "convert", counting)
    return sizes


def test_splits_hold_source_images_not_resized_ones(evaluator) -> None:
    data = evaluator.data
    for split in (data.train, data.val, data.test):
        assert split[0][0].shape == (3, SIDE, SIDE)
        assert _tensor_bytes(split) < RESIZED_SPLIT_BYTES / 100  # 1797 x 8 x 8 floats + rows: ~0.5 MB
        assert tuple(split.base.shape[1:]) == (1, 8, 8)  # the digits as scikit-learn ships them


def test_evaluation_reads_bounded_batches(evaluator, resized_batches) -> None:
    from dlopt.data.common import BATCH_INPUT_BYTES

    seen: list[int] = []

    class Probe(torch.nn.Module):  # the family only calls forward: a cheap stand-in for a 224 x 224 CNN
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(len(x))
            return torch.nn.functional.one_hot(x.mean(dim=(1, 2, 3)).gt(0).long(), 10).float()

    evaluator.evaluate(Probe(), "test")
    bound = BATCH_INPUT_BYTES // (3 * SIDE * SIDE * 4)  # 27
    assert sum(seen) == len(evaluator.data.test) and max(seen) <= bound
    assert max(resized_batches) <= bound  # never the whole split (270) resized at once


def test_calibration_and_probe_inputs_are_made_when_read(evaluator, resized_batches) -> None:
    from dlopt.quantize.calibrate import CALIB_BATCH, calibration_inputs, split_inputs

    calib = calibration_inputs(evaluator, evaluator.spec, None, 256, 0, True)
    assert calib.samples == 256 and len(calib.batches) == 256 // CALIB_BATCH
    assert _tensor_bytes(calib) < 256 * 3 * SIDE * SIDE * 4 / 100  # no batch is kept: 154 MB if they were
    resized_batches.clear()
    shapes = [tuple(b[0].shape) for b in calib.batches[:3]]
    assert shapes == [(CALIB_BATCH, 3, SIDE, SIDE)] * 3 and max(resized_batches) <= CALIB_BATCH
    held = split_inputs(evaluator, evaluator.spec, "test", 1024, 0)  # capped by the split (270)
    assert held.samples == len(evaluator.data.test)
    assert torch.equal(held[2][0], held[2][0])  # a batch read twice is the same batch (seeded order, no augment)


def test_parity_sums_equal_the_concatenated_result() -> None:
    from dlopt.quantize.judge import ParitySums, relative_error, top1

    gen = torch.Generator().manual_seed(0)
    refs = [torch.randn(n, 5, generator=gen) for n in (7, 3, 9)]
    outs = [r + 0.3 * torch.randn(r.shape, generator=gen) for r in refs]
    sums = ParitySums()
    for r, o in zip(refs, outs, strict=True):
        sums.add((r,), (o,))
    whole_ref, whole_out = torch.cat(refs), torch.cat(outs)
    assert sums.relative_error() == pytest.approx(relative_error(whole_ref, whole_out), rel=1e-5)
    assert sums.agreement() == pytest.approx(top1(whole_ref, whole_out))


# --- hostile data files through the CLI: exit 3, one line, no traceback -----------------------------------
def _one_line_error(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    line = " ".join(result.output[result.output.index("error:"):].split())
    for fragment in fragments:
        assert fragment in line, line
    return line


def _train(arch: str, data: str, path: Path, out: Path):
    return runner.invoke(app, ["train", arch, "--tiny", "--epochs", "1", "--data", data, "--data-path", str(path),
                               "--out", str(out)])


def test_csv_row_without_a_label_is_refused_with_its_line(tmp_path) -> None:
    rows = ["text,label", "the movie was good,pos", "the plot was bad,neg", "", "the cast was fine,", "dull,neg"]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    _one_line_error(_train("text_lstm", "csv", tmp_path / "reviews.csv", tmp_path / "runs"), 3, "line 5", "no label")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("model.json"))
    (tmp_path / "spaces.csv").write_text("a,pos\nb,neg\nc,   \n")
    _one_line_error(_train("text_lstm", "csv", tmp_path / "spaces.csv", tmp_path / "runs"), 3, "line 3")


@pytest.mark.parametrize(("x", "fragment"), [(np.float32(3.0), "X is a single value"),
                                             (np.array(["a", "b", "c"]), "numbers"),
                                             (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN")])
def test_npz_x_that_no_model_reads_is_refused(tmp_path, x, fragment: str) -> None:
    np.savez(tmp_path / "bad.npz", X=x, y=np.array([0, 1, 0]))
    _one_line_error(_train("mlp", "npz", tmp_path / "bad.npz", tmp_path / "runs"), 3, fragment)


def test_npz_whose_header_declares_too_much_is_refused_before_loading(tmp_path) -> None:
    import io
    import zipfile

    def member(shape: tuple[int, ...]) -> bytes:  # a .npy header and no data: what a zip bomb's header says
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
        return buf.getvalue()

    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("X.npy", member((10**6, 10**4)))  # 80 GB as float64
        z.writestr("y.npy", member((10**6,)))
    _one_line_error(_train("mlp", "npz", tmp_path / "bomb.npz", tmp_path / "runs"), 3, "74.5 GiB", "ceiling")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _one_line_error(_train("mlp", "npz", tmp_path / "broken.npz", tmp_path / "runs"), 3, "not a numeric .npz")


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG file that declares width x height grey pixels (what a decompression bomb's header says)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [9_000, 30_000])  # over dlopt's ceiling; over PIL's own bomb limit too
def test_image_folder_decompression_bomb_is_refused(tmp_path, side: int) -> None:
    for name in ("a", "b"):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((6, 6), 60 * i, dtype=np.uint8)).save(tmp_path / "pics" / name / f"{i}.png")
    _png_header_only(tmp_path / "pics" / "b" / "bomb.png", side, side)
    line = _one_line_error(_train("cnn", "imagefolder", tmp_path / "pics", tmp_path / "runs"), 3, "bomb.png")
    assert "pixels" in line


def test_memory_benchmark_measures_each_child_alone() -> None:
    """benchmarks/memory_peak.py --measure: the peak of its one child, not of an earlier, larger one."""
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_peak.py"

    def peak(mb: int) -> float:
        child = [sys.executable, "-c", f"b = bytearray({mb} * 2**20); b[::4096] = b'x' * len(b[::4096])"]
        out = subprocess.run([sys.executable, str(script), "--measure", "--", *child], capture_output=True,
                             text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        assert row["rc"] == 0
        return row["rss_mb"]

    big, small = peak(300), peak(20)
    assert 300 <= big < 400 and small < 100
