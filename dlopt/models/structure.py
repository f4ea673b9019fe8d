"""A pruned model's structure, saved beside its weights by dlopt.models.checkpoint so it is rebuilt without pickle.

The structure is the difference between the pruned model and the model its config builds: the submodules
replaced by an identity (residual blocks removed by depth pruning), the module attributes that changed (in/out
features and channels, BatchNorm / LayerNorm sizes, head counts) and the shape of every parameter and buffer
that changed. Loading builds the model from its config, applies the structure (identities first, then fresh
tensors of the recorded shapes), then loads and shape-checks the weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlopt.core.errors import InputFileError

STRUCTURE_FORMAT = "dlopt-pruned-structure/1"
DEPTH_FORMAT = "dlopt-pruned-structure/2"  # /1 plus `identities`: written only when blocks were removed, so a
# dlopt that cannot rebuild them refuses the record by its format instead of failing on missing weights
FORMATS = (STRUCTURE_FORMAT, DEPTH_FORMAT)
_PLAIN = (int, float, bool, str)


def _plain_attrs(module: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value)):
            out[key] = value
    return out


def describe(pruned: nn.Module, fresh: nn.Module) -> dict[str, Any]:
    """What differs between `pruned` and `fresh` (the model its config builds): JSON-serializable."""
    fresh_mods = dict(fresh.named_modules())
    attrs: dict[str, dict[str, Any]] = {}
    identities: list[str] = []
    for name, module in pruned.named_modules():
        base = fresh_mods.get(name)
        if base is not None and isinstance(module, nn.Identity) and not isinstance(base, nn.Identity):
            identities.append(name)
            continue
        if base is None or type(base) is not type(module):
            raise InputFileError(f"cannot describe the pruned model: module {name!r} is not in its architecture")
        before, after = _plain_attrs(base), _plain_attrs(module)
        changed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in after.items() if before.get(k) != v}
        if changed:
            attrs[name] = changed
    fresh_state = fresh.state_dict()
    shapes = {k: list(v.shape) for k, v in pruned.state_dict().items()
              if k in fresh_state and tuple(fresh_state[k].shape) != tuple(v.shape)}
    if identities:
        return {"format": DEPTH_FORMAT, "identities": identities, "attributes": attrs, "shapes": shapes}
    return {"format": STRUCTURE_FORMAT, "attributes": attrs, "shapes": shapes}


def _set_tensor(model: nn.Module, dotted: str, shape: list[int]) -> None:
    owner_name, _, leaf = dotted.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    old = getattr(owner, leaf)
    new = torch.empty(shape, dtype=old.dtype)
    if isinstance(old, nn.Parameter):
        setattr(owner, leaf, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        owner._buffers[leaf] = new


def to_identity(model: nn.Module, name: str) -> None:
    """Replace the submodule `name` by nn.Identity (AttributeError when the architecture has no such module)."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if leaf not in parent._modules:
        raise AttributeError(f"{parent_name or 'the model'} has no submodule {leaf!r}")
    parent._modules[leaf] = nn.Identity()


def apply(model: nn.Module, structure: dict[str, Any]) -> nn.Module:
    """Reshape a freshly built model to the recorded structure (weights are loaded afterwards)."""
    if not isinstance(structure, dict) or structure.get("format") not in FORMATS:
        found = structure.get("format") if isinstance(structure, dict) else structure
        raise InputFileError(f"unknown pruned-structure format {found!r}; "
                             f"expected {' or '.join(FORMATS)}")
    try:
        identities = structure.get("identities", []) if structure["format"] == DEPTH_FORMAT else []
        if not isinstance(identities, list) or not all(isinstance(n, str) and n for n in identities):
            raise TypeError("identities must be a list of module names")
        for name in identities:
            to_identity(model, name)
        for name, changed in structure["attributes"].items():
            module = model.get_submodule(name) if name else model
            for key, value in changed.items():
                setattr(module, key, tuple(value) if isinstance(value, list) else value)
        for dotted, shape in structure["shapes"].items():
            _set_tensor(model, dotted, shape)
    except (AttributeError, KeyError, TypeError) as exc:
        raise InputFileError(f"the pruned structure does not fit this architecture ({exc})") from None
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            module._init_flat_weights()
    return model
