"""A model's outputs as flat, named tensors: the one flatten every stage uses (export, verify, prune, quantize, bench).

A model may return a tensor, a tuple / list / namedtuple, a dict, or any nesting of those. Stages work on the
leaves in torch's pytree order (torch.utils._pytree: the order torch.export and the ONNX exporter flatten in;
dicts in insertion order), each named by its path: a dict key ("logits"), a nested path ("aux.0"), a namedtuple
field, or "output{i}" for the items of a top-level tuple. A leaf that is not a tensor (None, a number, a string)
is refused with the path that holds it: exporters cannot return it and no check could compare it.
"""

from __future__ import annotations

from typing import Any

from dlopt.core.errors import UnsupportedError

LIMIT = ("dlopt handles outputs that are tensors, or tuples, lists, namedtuples and dicts of tensors (nested "
         "too); return only tensors from forward()")


def _leaves_with_paths(out: Any) -> list[tuple[tuple[Any, ...], Any]]:
    from torch.utils._pytree import tree_flatten_with_path

    return tree_flatten_with_path(out)[0]


def _part(key: Any, top: bool) -> str:
    from torch.utils._pytree import GetAttrKey, MappingKey, SequenceKey

    if isinstance(key, SequenceKey):
        return f"output{key.idx}" if top else str(key.idx)
    if isinstance(key, MappingKey):
        return str(key.key)
    if isinstance(key, GetAttrKey):
        return key.name
    return str(key)


def path_name(path: tuple[Any, ...]) -> str:
    """'logits', 'aux.0', 'output1' (an item of a top-level tuple); 'output' for a lone tensor."""
    return ".".join(_part(k, i == 0) for i, k in enumerate(path)) or "output"


def flatten(out: Any) -> tuple[Any, ...]:
    """The output's tensors in pytree order; UnsupportedError naming the first leaf that is not a tensor."""
    import torch

    pairs = _leaves_with_paths(out)
    for path, leaf in pairs:
        if not isinstance(leaf, torch.Tensor):
            raise UnsupportedError(f"the model's output {path_name(path)!r} is {type(leaf).__name__}, not a "
                                   f"tensor: {LIMIT}")
    return tuple(leaf for _, leaf in pairs)


def names(out: Any, declared: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The leaves' names. A lone tensor or a flat tuple takes the spec's declared names when their count fits
    (so zoo models keep theirs); dict keys and nested paths name the rest."""
    pairs = _leaves_with_paths(out)
    flat = all(len(path) <= 1 and not _is_named(path) for path, _ in pairs)
    if flat and len(declared) == len(pairs):
        return tuple(declared)
    return tuple(path_name(path) for path, _ in pairs)


def _is_named(path: tuple[Any, ...]) -> bool:
    from torch.utils._pytree import SequenceKey

    return bool(path) and not isinstance(path[0], SequenceKey)


def structure(out: Any) -> str:
    """A short description for notes: 'tensor', 'tuple of 2', 'dict (logits, embedding)', 'nested (3 tensors)'."""
    import torch

    if isinstance(out, torch.Tensor):
        return "tensor"
    pairs = _leaves_with_paths(out)
    if all(len(p) == 1 for p, _ in pairs):
        if isinstance(out, dict):
            return f"dict ({', '.join(map(str, out))})"
        return f"{type(out).__name__} of {len(pairs)}"
    return f"nested {type(out).__name__} ({len(pairs)} tensors)"


def is_tensor_dict(out: Any) -> bool:
    """A flat dict of tensors (what TorchScript's tracer can return with strict=False)."""
    import torch

    return isinstance(out, dict) and all(isinstance(v, torch.Tensor) for v in out.values())


def is_flat(out: Any) -> bool:
    """A tensor, or a plain tuple / list of tensors: every exporter returns it as is."""
    import torch

    return isinstance(out, torch.Tensor) or (
        type(out) in (tuple, list) and all(isinstance(v, torch.Tensor) for v in out))


def plain_containers(out: Any) -> bool:
    """Only builtin dicts, lists and tuples around the tensors (no namedtuple or registered class), as torch.export
    can save without the user's classes registered."""
    if type(out) in (tuple, list):
        return all(plain_containers(v) for v in out)
    if type(out) is dict:
        return all(plain_containers(v) for v in out.values())
    return not isinstance(out, (tuple, list, dict))


def savable(module: Any, example: tuple) -> tuple[Any, list[str]]:
    """A module torch.export can save and dlopt load without the user's classes: when the output sits in a
    namedtuple (or any class of its own), the module returning its tensors as a flat tuple instead, and a note
    naming their order (the order verification compares them in); else the module itself and no note."""
    import torch

    with torch.no_grad():
        out = module(*example)
    if plain_containers(out):
        return module, []
    return flat_module(module), [
        f"pt2: the model returns a {structure(out)}, whose class torch.export cannot save; the .pt2 program "
        f"returns its tensors as a flat tuple, in this order: {', '.join(names(out))}"]


def flat_module(module: Any) -> Any:
    """`module` with forward returning flatten(out): a tuple of tensors every tracer and runtime accepts."""
    import torch

    class FlatOutputs(torch.nn.Module):
        varargs = True  # forward(*inputs): torch.export takes the inputs' dynamic shapes as one tuple

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            return flatten(self.inner(*inputs))

    return FlatOutputs(module).train(module.training)


def flat_if_needed(module: Any, example: tuple[Any, ...]) -> Any:
    """`module` itself when it returns a tensor or a flat tuple of them, else flat_module(module) (for tracers that
    take no dict or nested output, such as OpenVINO's PyTorch frontend)."""
    import torch

    with torch.no_grad():
        out = module(*example)
    return module if is_flat(out) else flat_module(module)


def energy(out: Any) -> Any:
    """The mean square of every output tensor, summed: one scalar whose gradient reaches every output."""
    return sum(o.float().pow(2).mean() for o in flatten(out))
