"""`mtai migrate` refuses a pgvector older than 0.8.0 (halfvec indexes, iterative scans)."""

from __future__ import annotations

import pytest

from mtai.db.migrate import OLD_PGVECTOR, PGVECTOR_MINIMUM, parse_version


@pytest.mark.parametrize(
    ("offered", "enough"),
    [
        ("0.4.1", False),  # before halfvec
        ("0.7.4", False),  # halfvec, but no iterative index scans
        ("0.8.0", True),
        ("0.8.1-dev", True),
        ("0.9.0rc1", True),
        ("0.10.0", True),  # compared as numbers, not as text
        ("1.0", True),
    ],
)
def test_versions_are_compared_as_numbers(offered: str, enough: bool) -> None:
    assert (parse_version(offered) >= PGVECTOR_MINIMUM) is enough


def test_the_refusal_names_the_version_and_the_fix() -> None:
    message = OLD_PGVECTOR.format(where="db:5432/mtai", version="0.7.4")
    assert "pgvector 0.7.4" in message
    assert "0.8.0 or newer" in message
    assert "mtai migrate" in message
