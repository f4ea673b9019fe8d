"""The fewest layers in higher precision (dlopt.quantize.mixed, step 3): the smallest k whose top-k layers of the
sensitivity ranking, kept out of int8, meet the budget. k grows from 1 by doubling, or by the larger factor that
reaches every layer but one within the builds the time affords (a search cut off at 8 of 82 layers has shown
nothing), then bisects down; and when every layer but one in float still breaks the budget, `impossible` says so.

`r` is the repair's run (mixed._Run): `attempt` builds and scores a variant, `ok` applies the sampling margin,
`late` and `builds_left` read the clock, `rec` records."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dlopt.quantize.repair_record import modules
from dlopt.quantize.repairs import Variant


def fewest(r: Any, make: Callable[[tuple[str, ...]], Variant], ranked: list[str], what: str,
           until: float | None = None, force: bool = False) -> None:
    """The smallest k whose top-k layers in higher precision meet the budget, searched before `until`: k grows from
    1 (`grow`), then bisects down. With `force`, the first attempt is made even when the time is spent."""
    top = max(1, len(ranked) - 1)  # all of them would be no int8 at all
    lo, hi, k = 0, None, 1
    while k <= top and (force or not r.late(until)):
        force = False
        if r.ok(r.attempt(make(tuple(ranked[:k])), f"{what}: top {k}")):
            hi = k
            break
        lo, k = k, grow(r, k, top, until) if k < top else top + 1
    while hi is not None and hi - lo > 1 and not r.late(until):
        mid = (lo + hi) // 2
        if r.ok(r.attempt(make(tuple(ranked[:mid])), f"{what}: top {mid}")):
            hi = mid
        else:
            lo = mid


def grow(r: Any, k: int, top: int, until: float | None) -> int:
    """The next count after k failed: twice k, or more when the builds left could not reach `top` by doubling."""
    builds = min(64, r.builds_left(until or r.deadline))  # inf before any build was timed
    if builds < 2:
        return top  # the last build: every layer but one, which says whether any file can hold the budget
    builds = int(builds)
    if k * 2 ** builds >= top:
        return min(top, k * 2)
    return min(top, max(k * 2, math.ceil(k * (top / k) ** (1 / builds))))


def impossible(r: Any, ranked: list[str]) -> str:
    """The repair's closing line when every layer but one in float was tried and still broke the budget (what
    that shows: the one layer left in int8 breaks it, and it came last in the ranking's order); else ''."""
    top = max(1, len(ranked) - 1)
    tried = [a for a in r.rec.attempts if a["repair"].startswith("float fallback") and "val_drop" in a
             and len(a.get("keep_float") or ()) >= top]
    if not tried or len(ranked) < 2:
        return ""
    a = min(tried, key=lambda x: x["val_drop"] if x["val_drop"] is not None else float("inf"))
    names = modules(r.s)
    left = [f"{x} ({names[x]})" if names.get(x) else x for x in ranked if x not in set(a["keep_float"])]
    return (f"no repair met the budget even with {len(a['keep_float'])} of {len(ranked)} layers in float: the drop "
            f"is still {a['val_drop']:.3g} points with only {', '.join(left) or 'none'} in int8, the layer last in "
            f"the ranking's order ({r.rec.order or 'graph order'}); int8 does not suit this model within the "
            "budget: deploy the fp32 or a half-precision file")
