"""Counts in messages read as people write them ("1 epoch", not "1 epochs")."""

from __future__ import annotations

import pytest

from dlopt.core.warn import count


@pytest.mark.parametrize(("n", "text"), [(0, "0 epochs"), (1, "1 epoch"), (3, "3 epochs")])
def test_count(n: int, text: str) -> None:
    assert count(n, "epoch") == text
