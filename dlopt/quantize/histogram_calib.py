"""Bounded memory for ONNX Runtime's histogram calibrators (entropy, percentile).

ORT's HistogramCalibrater keeps every activation of every calibrated tensor from all the data it is given in
one `collect_data` call, then copies them once more to build the histograms: ResNet-50 at 224x224 holds about
80 MB of activations per sample, so 256 samples in one call need over 20 GB. ORT's strided collection
(`CalibStridedMinMax`, which despite its name drives any calibrator) calls `collect_data` once per range of the
reader and merges each range into the running histograms. Here each range is one ORT run of `run` samples,
sized so that one run's activations stay under HIST_BUDGET bytes.

Merged naively, the histograms would count every sample but with bins set by the first run's range, and
entropy calibration (a KL search over those bins) would then pick other ranges than one-pass collection. So
`calibrate` reads the data twice: a first pass finds each tensor's global range, the histograms are created
empty over exactly the range one-pass collection would use, and the second pass adds each run into them. Counts
over the same edges add up, so the ranges equal one-pass collection's (tests/test_calibration_memory.py) at
the cost of a second inference pass. The result goes to quantize_static as its calibration cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HIST_BUDGET = 256 * 2**20  # bytes of activations one histogram collection may hold (ORT copies them about twice)


def activation_bytes_per_sample(path: Path, op_types: tuple[str, ...]) -> int | None:
    """Bytes of the float tensors going in and out of `op_types` nodes per sample (the tensors ORT's histogram
    calibrator collects), from the graph's inferred shapes; None when a shape is not known."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {v.name: v.type.tensor_type for v in [*graph.value_info, *graph.input, *graph.output]}
    inits = {i.name for i in graph.initializer}
    tensors = {t for n in graph.node if n.op_type in op_types for t in [*n.input, *n.output] if t and t not in inits}
    total = 0
    for name in tensors:
        ttype = shapes.get(name)
        if ttype is None or not ttype.HasField("shape"):
            return None
        numel = 1
        for axis, dim in enumerate(ttype.shape.dim):
            if dim.HasField("dim_value"):
                numel *= max(dim.dim_value, 1)
            elif axis != 0:  # a symbolic axis other than the batch: size unknown
                return None
        total += numel * 4
    return total


def run_size(path: Path, op_types: tuple[str, ...], batch: int, budget: int = HIST_BUDGET) -> int:
    """Samples per histogram collection: as many as fit the budget, at least 1, at most one batch."""
    per_sample = activation_bytes_per_sample(path, op_types)
    if not per_sample:
        return 1
    return max(1, min(batch, budget // per_sample))


def unit_reader(inputs: Any, names: list[str], run: int) -> Any:
    """ORT's CalibrationDataReader whose ranges count runs of `run` samples (not batches): with
    CalibStridedMinMax = 1, every `collect_data` sees one run. Each lazy batch is made once, when its first run
    is read, and sliced."""
    from onnxruntime.quantization import CalibrationDataReader

    units = [(k, s) for k, size in enumerate(batch_sizes(inputs)) for s in range(0, size, run)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._cached: tuple[int, Any] = (-1, None)
            self.set_range(0, len(units))

        def __len__(self) -> int:
            return len(units)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._todo = iter(units[start_index:end_index])

        def get_next(self) -> dict[str, Any] | None:
            unit = next(self._todo, None)
            if unit is None:
                return None
            k, s = unit
            if self._cached[0] != k:
                self._cached = (k, inputs[k])
            return {n: t[s:s + run].numpy() for n, t in zip(names, self._cached[1], strict=True)}

    return Reader()


def batch_sizes(inputs: Any) -> list[int]:
    """Samples per batch, without making the batches when `inputs` is dlopt's lazy Batches."""
    sizes = getattr(inputs, "batch_sizes", None)
    return list(sizes) if sizes is not None else [len(batch[0]) for batch in inputs]


def calibrate(src: Path, reader: Any, method: Any, op_types: tuple[str, ...], cache: Path) -> None:
    """Histogram calibration of `src` over `reader` (ranges of one run each) in two passes, written to `cache`
    (ORT's calibration cache JSON, read by quantize_static(calibration_cache_path=...))."""
    import contextlib
    import io

    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(Path(src), list(op_types), augmented_model_path=cache.with_suffix(".aug.onnx"),
                                   calibrate_method=method, providers=["CPUExecutionProvider"])
    with contextlib.redirect_stdout(io.StringIO()):  # ORT prints a line per collection
        _seed(calibrator, _global_ranges(calibrator, reader))
        for unit in range(len(reader)):
            reader.set_range(unit, unit + 1)
            calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), cache)
    cache.with_suffix(".aug.onnx").unlink(missing_ok=True)


def _global_ranges(calibrator: Any, reader: Any) -> dict[str, tuple[Any, Any, Any, Any]]:
    """Per calibrated tensor: (min, max, min |x|, max |x|) over all the data, one run at a time."""
    import numpy as np

    session = calibrator.infer_session
    names = [o.name for o in session.get_outputs()]
    wanted = set(calibrator.tensors_to_calibrate)
    ranges: dict[str, tuple[Any, Any, Any, Any]] = {}
    reader.set_range(0, len(reader))
    while (feed := reader.get_next()) is not None:
        for name, out in zip(names, session.run(None, feed), strict=True):
            if name not in wanted or out.size == 0:
                continue
            absolute = np.absolute(out)
            now = (np.nanmin(out), np.nanmax(out), np.nanmin(absolute), np.nanmax(absolute))
            old = ranges.get(name, now)
            ranges[name] = (min(old[0], now[0]), max(old[1], now[1]), min(old[2], now[2]), max(old[3], now[3]))
    return ranges


def _seed(calibrator: Any, ranges: dict[str, tuple[Any, Any, Any, Any]]) -> None:
    """Empty histograms over the edges one-pass collection would compute from all the data at once
    (HistogramCollector.collect_value for entropy: +-max|x|; collect_absolute_value for percentile: the range
    of |x|), so that every later collection falls inside them and only adds counts."""
    import numpy as np
    from onnxruntime.quantization.calibrate import HistogramCollector

    collector = HistogramCollector(method=calibrator.method, symmetric=calibrator.symmetric,
                                   num_bins=calibrator.num_bins, num_quantized_bins=calibrator.num_quantized_bins,
                                   percentile=calibrator.percentile, scenario=calibrator.scenario)
    for name, (lo, hi, abs_lo, abs_hi) in ranges.items():
        empty = np.zeros(0, dtype=lo.dtype)
        if calibrator.method == "entropy":
            threshold = np.array(max(abs(lo), abs(hi)), dtype=lo.dtype)
            hist, edges = np.histogram(empty, calibrator.num_bins, range=(-threshold, threshold))
            collector.histogram_dict[name] = (hist, edges, lo, hi, threshold)
        else:
            hist, edges = np.histogram(empty, calibrator.num_bins, range=(abs_lo, abs_hi))
            collector.histogram_dict[name] = (hist, edges.astype(lo.dtype), lo, hi)
    calibrator.collector = collector
