from __future__ import annotations

import json

import pytest
import torch

from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench.demo import run_demo

NAME = DEFAULT_WEIGHTS


def test_shipped_weights_are_listed_and_documented():
    shipped = SINE.shipped_weights()
    assert NAME in shipped
    meta = json.loads(shipped[NAME].with_name(NAME + ".json").read_text())
    assert meta["model_args"]["max_stations"] >= 8
    assert "sine train" in meta["docstring"]
    card = (shipped[NAME].parent / "README.md").read_text()
    assert NAME in card and "sine train" in card


def test_from_pretrained_finds_shipped_weights_offline():
    model = SINE.from_pretrained(NAME)
    shipped = torch.load(SINE.shipped_weights()[NAME].with_name(NAME + ".pt"), weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, shipped[key]), key


@pytest.mark.timeout(300)
def test_demo_runs_with_shipped_weights(tmp_path, capsys):
    out = tmp_path / "demo.png"
    result = run_demo(weights=NAME, out=out, seed=7)
    assert out.exists() and out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "True event" in text and "figure written" in text
    assert result["truth"]["magnitude"] == pytest.approx(2.8)
    # The trained picker finds the simulated P arrivals at most stations
    assert len(result["p_residuals_s"]) >= 6
