"""Helpers shared by the CLI tests."""

from __future__ import annotations


def one_error_line(code: int, err: str, *needles: str) -> str:
    """Asserts exit status 2 and exactly one stderr line ``sine ...`` without a traceback that holds ``needles``."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert lines[0].startswith("sine ")
    return lines[0]
