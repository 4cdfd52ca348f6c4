"""The Docker build contexts: what each ignore file lets through is what its Dockerfile copies.

No Docker engine runs here, so ``tests/docker_context.py`` applies Docker's ``.dockerignore`` rules (checked
below on known cases) and executes the Dockerfiles' COPY instructions against the resulting context.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from deploy_contract import DEPLOY, ROOT
from docker_context import (
    DockerContextError,
    IgnoreMatcher,
    apply_copies,
    build_context,
    context_files,
    copied_from_context,
    parse_dockerfile,
)

DOCKERFILES = (DEPLOY / "docker" / "Dockerfile", DEPLOY / "docker" / "Dockerfile.train")


def ignore_file(dockerfile: Path) -> Path:
    """BuildKit reads ``<Dockerfile>.dockerignore`` beside the Dockerfile before the context's own."""
    return dockerfile.with_name(dockerfile.name + ".dockerignore")


def matcher(*lines: str) -> IgnoreMatcher:
    return IgnoreMatcher.from_lines(lines)


@pytest.mark.parametrize(
    ("patterns", "excluded", "kept"),
    [
        # the examples of Docker's .dockerignore documentation
        (["*/temp*"], ["somedir/temporary.txt", "somedir/temp", "somedir/temp/x"], ["temp", "a/b/temp"]),
        (["*/*/temp*"], ["somedir/subdir/temporary.txt"], ["somedir/temporary.txt"]),
        (["temp?"], ["tempa", "tempb/x"], ["tempab", "temp", "a/tempa"]),
        (["**/*.go"], ["a.go", "x/y/z.go"], ["a.gox", "go"]),
        (["*.md", "!README*.md", "README-secret.md"], ["CHANGES.md", "README-secret.md"], ["README.md"]),
        (["*.md", "README-secret.md", "!README*.md"], ["CHANGES.md"], ["README-secret.md", "README.md"]),
        # a pattern matching a parent directory excludes everything below it
        (["docs"], ["docs", "docs/a/b.txt"], ["docsx", "a/docs.txt"]),
        # leading "/" and Go's filepath.Clean
        (["/foo/bar"], ["foo/bar", "foo/bar/x"], ["bar", "x/foo/bar"]),
        (["foo/../bar/./"], ["bar/x"], ["foo/bar"]),
        # "**" alone, then exceptions; the last matching pattern wins
        (["**", "!a/**", "a/**/*.pyc"], ["b", "b/x.py", "a/b/c.pyc", "a/c.pyc"], ["a/c.py", "a/b/c.py"]),
        # an exception re-includes inside an excluded directory
        (["a", "!a/b"], ["a", "a/c"], ["a/b", "a/b/c"]),
        # "**" in the middle matches zero or more segments; "*" never crosses "/"
        (["a/**/z"], ["a/z", "a/b/z", "a/b/c/z"], ["a/bz", "az"]),
        (["a*"], ["abc", "abc/d"], ["x/abc"]),
        # escapes, character classes, comments and blank lines
        (["f\\*"], ["f*"], ["fx"]),
        (["[a-c].txt", "[!x]y"], ["b.txt", "zy"], ["d.txt", "xy"]),
        (["# comment", "", "   ", "x"], ["x"], ["# comment", "comment"]),
    ],
)
def test_ignore_matcher_follows_docker_rules(
    patterns: list[str], excluded: list[str], kept: list[str]
) -> None:
    rules = matcher(*patterns)
    for path in excluded:
        assert rules.excluded(path), (patterns, path)
    for path in kept:
        assert not rules.excluded(path), (patterns, path)


def test_ignore_matcher_rejects_a_bare_exclamation_mark() -> None:
    with pytest.raises(DockerContextError, match="illegal exclusion"):
        matcher("**", "!")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_survives_the_ignore_file(dockerfile: Path, tmp_path: Path) -> None:
    ignore = ignore_file(dockerfile)
    assert ignore.is_file(), f"{ignore} missing: the whole repository would be the context"
    rules = IgnoreMatcher.from_file(ignore)
    context = build_context(ROOT, ignore, tmp_path / "context")
    sources = copied_from_context(parse_dockerfile(dockerfile))
    assert "constraints.txt" in sources
    for source in sources:
        if (ROOT / source).is_file():
            assert not rules.excluded(source), f"{dockerfile.name} copies {source}, {ignore.name} excludes it"
        else:  # a directory reaches the context with its surviving files (BuildKit adds their parents)
            assert not (ROOT / source / "__init__.py").is_file() or not rules.excluded(
                f"{source}/__init__.py"
            ), f"{dockerfile.name} copies {source}, {ignore.name} excludes its files"
        below = [path for path in context if path == source or path.startswith(source.rstrip("/") + "/")]
        assert below, f"{dockerfile.name} copies {source}: nothing of it reaches the build context"
    # each stage's COPY instructions run against the context as docker build would
    for index, stage in enumerate(parse_dockerfile(dockerfile)):
        apply_copies(stage, tmp_path / "context", tmp_path / f"image-{index}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_context_holds_the_installable_project_and_nothing_else(dockerfile: Path, tmp_path: Path) -> None:
    files = context_files(ROOT, IgnoreMatcher.from_file(ignore_file(dockerfile)))
    top_level = {path.split("/")[0] for path in files}
    # every package that `pip install .` finds (pyproject's packages.find) is in the context and copied
    include = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if any(fnmatchcase(path.parent.name, pattern) for pattern in include)
    }
    assert packages and packages <= top_level, packages - top_level
    copied = {source.split("/")[0] for source in copied_from_context(parse_dockerfile(dockerfile))}
    assert packages <= copied, packages - copied
    assert top_level <= copied, f"sent to the builder but never copied: {top_level - copied}"
    assert not [path for path in files if re.search(r"(^|/)(__pycache__|\.git|\.venv)(/|$)|\.pyc$", path)]
    assert not any(path.startswith(("tests/", "benchmarks/", "deploy/")) for path in files)
    image = tmp_path / "image"
    build_stage = parse_dockerfile(dockerfile)[0]
    apply_copies(build_stage, _materialise(files, tmp_path / "ctx"), image)
    workdir = image / build_stage.of("WORKDIR")[0].arguments.lstrip("/")  # where pip install runs
    assert (workdir / "constraints.txt").read_bytes() == (ROOT / "constraints.txt").read_bytes()
    assert (workdir / "headline_scorer" / "sample_data" / "train.csv").is_file()


def _materialise(files: set[str], destination: Path) -> Path:
    for relative in files:
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        (destination / relative).write_bytes((ROOT / relative).read_bytes())
    return destination


def test_a_copy_source_missing_from_the_context_fails_like_docker_build(tmp_path: Path) -> None:
    dockerfile = DOCKERFILES[0]
    text = ignore_file(dockerfile).read_text(encoding="utf-8")
    assert "!constraints.txt\n" in text
    broken = tmp_path / "Dockerfile.dockerignore"
    broken.write_text(text.replace("!constraints.txt\n", ""), encoding="utf-8")  # the file as it was
    assert IgnoreMatcher.from_file(broken).excluded("constraints.txt")
    build_context(ROOT, broken, tmp_path / "context")
    with pytest.raises(DockerContextError, match=r"COPY constraints\.txt: not found"):
        apply_copies(parse_dockerfile(dockerfile)[0], tmp_path / "context", tmp_path / "image")
