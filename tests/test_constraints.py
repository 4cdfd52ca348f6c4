"""constraints.txt: the exact versions every install uses (make, CI, the Docker images)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert match, f"constraints.txt:{number}: expected NAME==VERSION, got {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"constraints.txt:{number}: {name} pinned twice"
        pins[name] = Version(match[2])
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    every_extra = [r for extra in extras.values() for r in extra]
    return [Requirement(r) for r in [*project["dependencies"], *every_extra]]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in pyproject.toml but not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: "
            "run `make lock`"
        )


def test_the_lock_holds_no_local_or_editable_entries() -> None:
    text = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert "headline-scorer" not in text and "headline_scorer" not in text
    assert "file://" not in text and " @ " not in text
    assert "+cpu" not in text  # `torch==2.13.0` matches the CPU build's local version on every index


def test_make_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in makefile.splitlines() if "$(BIN)/python -m pip install" in line]
    project_installs = [line for line in installs if "upgrade pip" not in line]
    assert project_installs and all("-c constraints.txt" in line for line in project_installs), installs
