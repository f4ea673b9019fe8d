"""--compare: deltas of each row's median against an earlier result, judged against the measured noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlopt.core.errors import CheckFailedError


@dataclass(frozen=True)
class Delta:
    variant: str
    batch_size: int
    seq_len: int | None
    old_ms: float
    new_ms: float
    delta_pct: float  # (new - old) / old; positive = slower
    noise_pct: float  # the larger of the two runs' IQR / median: a change smaller than this is not credible
    verdict: str  # "regression", "faster" or "same"

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _key(row: dict[str, Any]) -> tuple[str, int, int | None]:
    return row["variant"], row["batch_size"], row.get("seq_len")


def compare(new: dict[str, Any], old: dict[str, Any]) -> list[Delta]:
    """One Delta per row measured in both results (matched by variant, batch size, sequence length)."""
    before = {_key(r): r for r in old["rows"] if r.get("stats")}
    out = []
    for row in new["rows"]:
        prev = before.get(_key(row))
        if not row.get("stats") or prev is None:
            continue
        a, b = prev["stats"], row["stats"]
        delta = 100 * (b["median_ms"] - a["median_ms"]) / a["median_ms"]
        noise = 100 * max(a["iqr_ms"] / a["median_ms"], b["iqr_ms"] / b["median_ms"])
        verdict = "regression" if delta > noise else "faster" if delta < -noise else "same"
        out.append(Delta(row["variant"], row["batch_size"], row.get("seq_len"), a["median_ms"], b["median_ms"],
                         delta, noise, verdict))
    return out


def check_regressions(deltas: list[Delta], fail_pct: float) -> None:
    """Raise CheckFailedError when a row got slower by more than fail_pct AND by more than the noise."""
    bad = [d for d in deltas if d.verdict == "regression" and d.delta_pct > fail_pct]
    if bad:
        listed = "; ".join(f"{d.variant} batch {d.batch_size}: +{d.delta_pct:.1f}% (noise {d.noise_pct:.1f}%)"
                           for d in bad)
        raise CheckFailedError(f"{len(bad)} regression(s) beyond {fail_pct:g}% and the measured noise: {listed}")
