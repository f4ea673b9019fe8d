"""The table zoo specs register into: the family files write it, dlopt.models.registry reads it.

It sits below both so that the zoo never imports the registry that looks the zoo up (no registry <-> zoo cycle).
`dlopt.models.registry.register` is this same function, for code outside dlopt (a user's or a test's spec file).
"""

from __future__ import annotations

from dlopt.models.spec import ArchSpec, Task

SPECS: dict[str, ArchSpec] = {}  # name -> spec, in registration order

# What every supervised classifier of the zoo declares alike: `register(ArchSpec(..., **CLASSIFIER, dataset=...))`.
CLASSIFIER = {"trainer": "classification", "task": Task.CLASSIFICATION, "metric": "accuracy"}


def register(spec: ArchSpec) -> ArchSpec:
    if spec.name in SPECS:
        raise ValueError(f"architecture {spec.name!r} registered twice")
    SPECS[spec.name] = spec
    return spec
