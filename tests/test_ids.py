"""One id scheme: every writer names its objects in SINE's namespace from the same seeds."""

from __future__ import annotations

import ast
from pathlib import Path

import sine_seisbench
from sine_seisbench.ids import AGENCY, is_ours, named_id, resource_id, stable_id


def test_ids_are_deterministic_and_namespaced():
    a, b = stable_id("pick", "XX.A..|P|1.00"), stable_id("pick", "XX.A..|P|1.00")
    assert a == b and a.startswith(f"smi:{AGENCY}/pick/") and len(a.rsplit("/", 1)[1]) == 16
    assert stable_id("pick", "XX.A..|S|1.00") != a
    assert str(resource_id("event", "seed")) == stable_id("event", "seed")
    assert named_id("catalog", "2026-12-01") == f"smi:{AGENCY}/catalog/2026-12-01"
    assert is_ours(resource_id("x", "y")) and is_ours(a) and not is_ours("smi:local/event/0")
    assert not is_ours(None)


def test_no_module_builds_ids_of_its_own():
    """Ids in SINE's namespace are made only by sine_seisbench.ids (no hard-coded 'smi:sine-seisbench')."""
    package = Path(sine_seisbench.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "ids.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith(f"smi:{AGENCY}") or node.value.startswith("smi:sine"):
                    offenders.append(f"{path.relative_to(package)}:{node.lineno}")
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if text.startswith("smi:sine") or (
                    text.startswith("smi:")
                    and any(
                        isinstance(v, ast.FormattedValue)
                        and isinstance(v.value, ast.Name)
                        and v.value.id == "AGENCY"
                        for v in node.values
                    )
                ):
                    offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not offenders, f"ids built outside sine_seisbench/ids.py: {offenders}"
