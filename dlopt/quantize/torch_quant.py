"""PyTorch paths: torchao's PT2E flow with the x86 quantizer (static int8), torchao `quantize_` (dynamic int8
of Linear layers), and fp16 / bf16 casts. Every result is saved as a torch.export .pt2 program (no pickle of
modules: the run's manifest records its sha256, which is what lets dlopt load it back)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from dlopt.core.errors import UnsupportedError
from dlopt.quantize.config import Method
from dlopt.quantize.recipe import Built, Recipe


def bf16_supported() -> bool:
    """bf16 arithmetic needs AVX512-BF16 or AMX on x86 (else torch emulates it, slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def _layers(module: Any, kinds: tuple[type, ...]) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, kinds) and name]


def quantizable(module: Any, method: Method) -> list[str]:
    import torch.nn as nn

    kinds = (nn.Linear,) if method == Method.DYNAMIC else (nn.Conv2d, nn.Conv1d, nn.Linear)
    return _layers(module, kinds)


def _exported(module: Any, spec: Any, cfg: Any) -> Any:
    import torch

    from dlopt.export.shapes import module_dynamic_shapes
    from dlopt.models.registry import make_inputs

    shapes = module_dynamic_shapes(module, spec, cfg)
    return torch.export.export(module, make_inputs(spec, cfg, 2), dynamic_shapes=shapes)


def _pt2e(module: Any, spec: Any, cfg: Any, recipe: Recipe, calib: list[tuple[Any, ...]]) -> Any:
    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())  # weights always per channel
    for name in recipe.keep_float:
        quantizer.set_module_name_qconfig(name, None)
    prepared = prepare_pt2e(_exported(copy.deepcopy(module), spec, cfg).module(), quantizer)
    with torch.no_grad():
        for batch in calib:
            prepared(*batch)
    return convert_pt2e(prepared)


def _dynamic(module: Any, recipe: Recipe) -> Any:
    import torch.nn as nn
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    out = copy.deepcopy(module)
    keep = set(recipe.keep_float)
    quantize_(out, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn not in keep)
    return out


def _half(module: Any, method: Method) -> Any:
    import torch

    if method == Method.BF16 and not bf16_supported():
        raise UnsupportedError("this CPU has no bf16 instructions (avx512_bf16 / amx_bf16): bf16 would be emulated "
                               "and slower than fp32; use --method fp16 on a GPU, or int8")
    from torch.utils._pytree import tree_map

    dtype = torch.float16 if method == Method.FP16 else torch.bfloat16

    class Cast(torch.nn.Module):
        """Float inputs cast to the half type, outputs back to fp32 (token ids stay int64)."""

        varargs = True

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *xs: Any) -> Any:
            xs = tuple(x.to(dtype) if x.is_floating_point() else x for x in xs)
            return tree_map(lambda o: o.float() if o.is_floating_point() else o, self.inner(*xs))

    return Cast(copy.deepcopy(module).to(dtype)).eval()


def build(recipe: Recipe, module: Any, spec: Any, cfg: Any, calib: list[tuple[Any, ...]], dst: Path) -> Built:
    """Quantize (or cast) a copy of the entry module and save it as a .pt2 program at `dst`."""
    import torch

    from dlopt.core.fileio import torch_archive
    from dlopt.models.outputs import flatten, savable
    from dlopt.models.registry import make_inputs
    from dlopt.runtime.quiet import quiet_deprecations

    module = savable(module, make_inputs(spec, cfg, 2))[0]  # a namedtuple output saved as a flat tuple
    with quiet_deprecations():
        if recipe.method == Method.STATIC:
            qmodel = _pt2e(module, spec, cfg, recipe, calib)
        elif recipe.method == Method.DYNAMIC:
            qmodel = _dynamic(module, recipe)
        else:
            qmodel = _half(module, recipe.method)
        program = _exported(qmodel, spec, cfg)
        with torch_archive(dst) as buffer:
            torch.export.save(program, buffer)
    qmodel = qmodel.eval() if hasattr(qmodel, "eval") and recipe.method != Method.STATIC else qmodel

    def run(*inputs: Any) -> tuple[Any, ...]:
        with torch.inference_mode():
            return flatten(qmodel(*inputs))

    layers = quantizable(module, recipe.method) if recipe.method in (Method.STATIC, Method.DYNAMIC) else []
    done = tuple(n for n in layers if n not in recipe.keep_float)
    notes = ["torch int8 runs here in eager mode (q/dq ops around fp32 kernels); its speed needs torch.compile "
             "with inductor"] if recipe.method == Method.STATIC else []
    if recipe.method == Method.STATIC and not recipe.per_channel:
        notes.append("the x86 PT2E quantizer always quantizes weights per channel; --per-tensor was ignored")
    return Built(recipe, dst, run, done, tuple(recipe.keep_float), notes)


# The backend table's entry points (dlopt.quantize.recipe.BACKENDS): the same names in every <backend>_quant module.
METHODS = (Method.STATIC, Method.DYNAMIC, Method.FP16, Method.BF16)
AUTO_METHODS = (Method.STATIC, Method.DYNAMIC)
CALIBRATED_METHODS = (Method.STATIC,)


def build_for(s: Any, recipe: Recipe, batches: Any, dst: Path) -> Built:
    return build(recipe, s.module, s.spec, s.model_cfg, batches, dst)
