from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import seisbench
import torch

from sine_seisbench import SINE
from sine_seisbench.example import network_stream


def custom_model() -> SINE:
    torch.manual_seed(3)
    return SINE(
        max_stations=5,
        in_samples=2001,
        filter_factor=2,
        lstm_hidden=16,
        latent_channels=2,
        graph_layers=1,
        k_neighbours=3,
        radius_km=80.0,
        norm="peak",
    )


def test_cache_root_is_the_tests_own():
    assert str(seisbench.cache_root) == os.environ["SEISBENCH_CACHE_ROOT"]


def test_get_model_args_rebuilds_the_same_model():
    model = custom_model()
    args = model.get_model_args()
    json.dumps(args)  # serialisable
    clone = SINE(**args)
    assert clone.get_model_args() == args
    assert [p.shape for p in clone.parameters()] == [p.shape for p in model.parameters()]


def test_save_load_gives_identical_outputs(tmp_path):
    model = custom_model().eval()
    model.default_args["P_threshold"] = 0.25
    model.save(tmp_path / "custom", weights_docstring="test weights")
    loaded = SINE.load(tmp_path / "custom").eval()
    assert loaded.default_args["P_threshold"] == 0.25
    assert loaded.weights_docstring == "test weights"
    x = torch.randn(2, 5, 3, 2001)
    pos = torch.randn(2, 5, 3) * 10
    with torch.no_grad():
        a, b = model(x, positions=pos), loaded(x, positions=pos)
    for key in a:
        assert torch.equal(a[key], b[key])
    st, inv = network_stream(7)
    ann_a = model.annotate(st, inventory=inv)
    ann_b = loaded.annotate(st, inventory=inv)
    assert len(ann_a) == len(ann_b) == 21
    for tr in ann_a:
        np.testing.assert_array_equal(tr.data, ann_b.select(id=tr.id)[0].data)


def test_from_pretrained_reads_the_local_cache():
    model = custom_model()
    folder = Path(seisbench.cache_model_root) / "sine"
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "unittest", version_str="1")
    loaded = SINE.from_pretrained("unittest")
    assert loaded.get_model_args() == model.get_model_args()
    for (name, p), (_, q) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), name


class Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_load_refuses_pickled_objects(tmp_path):
    model = custom_model()
    model.save(tmp_path / "evil")
    state = model.state_dict()
    state["payload"] = Payload()
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump(state, f)
    with pytest.raises(pickle.UnpicklingError):
        SINE.load(tmp_path / "evil")
