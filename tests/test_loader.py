"""The one weights loader (:mod:`sine_seisbench.loader`) and its callers; the command modules form no import
circle."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import seisbench
import seisbench.util
import torch

import sine_seisbench
from sine_seisbench import DEFAULT_WEIGHTS, SINE
from sine_seisbench import seisbench_adapter as sba
from sine_seisbench.errors import MissingFileError, UserError
from sine_seisbench.loader import UNTRAINED, load_weights, resolve_weights, weight_names

PACKAGE = Path(sine_seisbench.__file__).parent


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty SeisBench model cache: the folder SINE.from_pretrained would write to."""
    monkeypatch.setattr(seisbench, "cache_model_root", tmp_path / "models")
    return sba.model_cache_folder(SINE)


def _shipped_state() -> dict[str, torch.Tensor]:
    path = SINE.shipped_weights()[DEFAULT_WEIGHTS]
    return torch.load(f"{path}.pt", weights_only=True)


def _same(a: SINE, b: SINE | dict) -> bool:
    b = b if isinstance(b, dict) else b.state_dict()
    state = a.state_dict()
    return state.keys() == b.keys() and all(torch.equal(state[k], b[k]) for k in state)


def _copy_shipped(folder: Path, name: str = "mine") -> Path:
    shipped = SINE.shipped_weights()[DEFAULT_WEIGHTS]
    for ext in (".json", ".pt"):
        shutil.copyfile(f"{shipped}{ext}", folder / f"{name}{ext}")
    return folder / name


# ---------------------------------------------------------------------------------------------------------------
# The specs
# ---------------------------------------------------------------------------------------------------------------
def test_default_and_none_are_the_shipped_weights_read_from_the_package(offline, empty_cache):
    for model in (load_weights(), load_weights(None), load_weights(DEFAULT_WEIGHTS)):
        assert isinstance(model, SINE) and not model.training
        assert _same(model, _shipped_state())
    assert not empty_cache.exists()  # nothing written to SeisBench's cache


@pytest.mark.parametrize("suffix", ["", ".json", ".pt"])
def test_path_with_or_without_suffix(offline, tmp_path, suffix):
    base = _copy_shipped(tmp_path)
    assert resolve_weights(f"{base}{suffix}") == str(base)
    assert _same(load_weights(f"{base}{suffix}"), _shipped_state())
    assert _same(load_weights(Path(f"{base}{suffix}")), _shipped_state())  # os.PathLike


def test_untrained_is_explicit_and_seeded_when_asked(offline):
    before = torch.random.get_rng_state()
    a = load_weights(UNTRAINED, untrained_seed=3)
    b = load_weights(UNTRAINED, untrained_seed=3)
    assert torch.equal(
        torch.random.get_rng_state(), before
    )  # the caller's random state is untouched
    assert _same(a, b) and not _same(a, load_weights(UNTRAINED, untrained_seed=4))
    assert not _same(a, _shipped_state())
    assert resolve_weights(UNTRAINED) == UNTRAINED


def test_untrained_warns_only_for_a_command(capsys):
    load_weights(UNTRAINED)
    assert capsys.readouterr().err == ""
    load_weights(UNTRAINED, command="sine info")
    assert "sine info: using untrained SINE weights" in capsys.readouterr().err
    load_weights(DEFAULT_WEIGHTS, command="sine info")
    assert capsys.readouterr().err == ""


def test_device(offline):
    model = load_weights(device="cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    if torch.cuda.is_available():
        model = load_weights(device=torch.device("cuda"))
        assert {p.device.type for p in model.parameters()} == {"cuda"}


def test_unknown_name_names_the_spec_and_the_choices_without_network(offline):
    with pytest.raises(UserError) as info:
        load_weights("sine_pn_orignal", "--init")
    text = str(info.value)
    assert text.startswith("--init:") and "'sine_pn_orignal'" in text
    assert f"did you mean '{DEFAULT_WEIGHTS}'" in text and UNTRAINED in text and "NAME.json" in text
    assert DEFAULT_WEIGHTS in weight_names()


def test_path_missing_one_file(offline, tmp_path):
    _copy_shipped(tmp_path, "half")
    (tmp_path / "half.json").unlink()
    with pytest.raises(MissingFileError, match="half.json does not exist"):
        load_weights(tmp_path / "half.pt")


def test_files_that_are_not_sine_weights(offline, tmp_path):
    base = _copy_shipped(tmp_path, "broken")
    Path(f"{base}.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot be loaded as SINE weights"):
        load_weights(base)


def test_names_in_seisbench_cache_go_through_from_pretrained(offline, empty_cache, monkeypatch):
    empty_cache.mkdir(parents=True)
    for ext in (".json", ".pt"):
        shutil.copyfile(
            f"{SINE.shipped_weights()[DEFAULT_WEIGHTS]}{ext}", empty_cache / f"cached{ext}.v1"
        )
    assert "cached" in weight_names()
    called = []
    original = SINE.from_pretrained.__func__

    def spy(cls, name, *args, **kwargs):
        called.append(name)
        return original(cls, name, *args, **kwargs)

    monkeypatch.setattr(SINE, "from_pretrained", classmethod(spy))
    assert _same(load_weights("cached"), _shipped_state())
    assert called == ["cached"]


# ---------------------------------------------------------------------------------------------------------------
# Every caller goes through it
# ---------------------------------------------------------------------------------------------------------------
def test_archive_untrained_weights_are_the_loaders_seeded_ones(offline):
    from sine_seisbench import archive

    model = archive.load_model(None)
    assert _same(model, load_weights(UNTRAINED, untrained_seed=archive.UNTRAINED_SEED))
    assert _same(archive.load_model(UNTRAINED), model) and not model.training
    assert archive.get_model(UNTRAINED) is archive.get_model(
        None
    )  # one cache entry, one manifest value
    assert _same(archive.load_model(DEFAULT_WEIGHTS), _shipped_state())


def test_archive_refuses_unknown_weights(offline):
    from sine_seisbench.archive import get_model

    with pytest.raises(UserError, match="'sine_pn_orignal'"):
        get_model("sine_pn_orignal")


def test_train_init_reads_shipped_weights_without_the_cache(offline, empty_cache, tmp_path):
    from sine_seisbench.train import TrainConfig, initial_model

    model = initial_model(
        TrainConfig(dataset="unused", out=str(tmp_path / "w"), init=DEFAULT_WEIGHTS)
    )
    assert _same(model, _shipped_state())
    assert not empty_cache.exists()
    with pytest.raises(UserError, match="--init"):
        initial_model(TrainConfig(dataset="unused", out=str(tmp_path / "w"), init="nope"))


def test_demo_loads_paths_and_names_with_the_loader(monkeypatch, tmp_path):
    from sine_seisbench import demo

    seen = []

    class Stop(Exception):
        pass

    def fake(spec=DEFAULT_WEIGHTS, *args, **kwargs):
        seen.append(spec)
        raise Stop

    monkeypatch.setattr(demo, "load_weights", fake)
    for spec in (str(tmp_path / "mine"), None, UNTRAINED):
        with pytest.raises(Stop):
            demo.run_demo(weights=spec, out=tmp_path / "d.png")
    assert seen == [str(tmp_path / "mine"), None, UNTRAINED]


def test_monitor_default_weights_through_the_loader(monkeypatch):
    from sine_seisbench.monitor import cli as monitor_cli

    seen = []
    monkeypatch.setattr(
        monitor_cli,
        "load_weights",
        lambda spec, **kw: seen.append((spec, kw)) or SINE(max_stations=4),
    )
    monitor_cli._model(None, "cpu")
    monitor_cli._model(UNTRAINED, "cpu")
    assert [s for s, _ in seen] == [DEFAULT_WEIGHTS, UNTRAINED]
    assert all(kw["device"] == "cpu" for _, kw in seen)


# ---------------------------------------------------------------------------------------------------------------
# No import circle in the command layer
# ---------------------------------------------------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (at module level or inside functions), as dotted names of the package."""
    package = ["sine_seisbench", *path.relative_to(PACKAGE).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize(
    "module",
    [
        "cli_support.py",
        "loader.py",
        "monitor/cli.py",
        "plot.py",
        "archive.py",
        "train.py",
        "demo.py",
    ],
)
def test_modules_below_the_sine_command_do_not_import_it(module):
    imported = _imports(PACKAGE / module)
    assert "sine_seisbench.cli" not in imported, f"{module} imports sine_seisbench.cli"
    if module in ("cli_support.py", "loader.py"):
        commands = {
            "sine_seisbench.monitor.cli",
            "sine_seisbench.plot",
            "sine_seisbench.bench.harness",
        }
        assert not imported & commands, f"{module} imports {imported & commands}"
