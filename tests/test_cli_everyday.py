"""The everyday tools of issue 14 (part A): progress bars and ``--quiet``, devices, help texts with their
defaults, the shipped default weights on every entry point, ``--fdsn``."""

from __future__ import annotations

import io

import pytest

from sine_seisbench import progress as progress_mod
from sine_seisbench.progress import is_quiet, progress, set_quiet


@pytest.fixture
def loud(monkeypatch):
    """Progress bars shown (whatever the environment says); the switch is reset afterwards."""
    monkeypatch.delenv(progress_mod.QUIET_ENV, raising=False)
    set_quiet(None)
    yield
    set_quiet(None)


# ---------------------------------------------------------------------------------------------------------------
# Progress bars
# ---------------------------------------------------------------------------------------------------------------
def test_progress_writes_to_stderr_and_quiet_silences_it(loud, capsys):
    assert list(progress(range(3), desc="things", unit="thing")) == [0, 1, 2]
    captured = capsys.readouterr()
    assert "things" in captured.err and "3/3" in captured.err and captured.out == ""
    set_quiet(True)
    assert is_quiet()
    assert list(progress(range(3), desc="things")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_progress_environment_variable_and_manual_updates(loud, monkeypatch):
    monkeypatch.setenv(progress_mod.QUIET_ENV, "1")
    assert is_quiet()
    set_quiet(False)  # the explicit switch wins over the environment
    assert not is_quiet()
    buf = io.StringIO()
    with progress(total=4, desc="chunks", unit="chunk", file=buf) as bar:
        bar.update(4)
    assert "4/4" in buf.getvalue()
    set_quiet(None)
    assert is_quiet()
    buf = io.StringIO()
    with progress(total=4, desc="chunks", file=buf) as bar:
        bar.update(4)
    assert buf.getvalue() == ""
