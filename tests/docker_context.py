"""What ``docker build`` would see and do, without a Docker engine: ignore files, contexts, COPY and RUN.

* :class:`IgnoreMatcher` implements the ``.dockerignore`` rules of Docker/BuildKit (moby's
  ``patternmatcher`` and ``ignorefile``): lines starting with ``#`` are comments; each pattern is trimmed,
  cleaned like Go's ``filepath.Clean`` and made relative to the context root (a leading ``/`` is dropped);
  ``*`` matches any run of characters except ``/``, ``?`` one such character, ``[...]`` a character class,
  ``\\`` escapes the next character, ``**`` any number of path segments (zero included); a pattern
  excludes a path when it matches the path or one of its parent directories; ``!pattern`` re-includes;
  the last pattern that matches decides.
* :func:`context_files` walks a directory as the build context and keeps what the ignore file lets through.
* :func:`parse_dockerfile` splits a Dockerfile into stages of instructions (continuation lines joined).
* :func:`apply_copies` executes a stage's ``COPY`` instructions from a context directory into a directory
  standing for the image's filesystem, failing as ``docker build`` does when a source is not in the context.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class DockerContextError(Exception):
    """A Dockerfile or ignore file would make ``docker build`` fail (bad pattern, missing COPY source)."""


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` for slash-separated paths ("" -> ".", "//a/./b/../c" -> "/a/c")."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@dataclass(frozen=True)
class IgnorePattern:
    """One cleaned pattern of an ignore file, compiled to a regular expression over context paths."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, line: str) -> IgnorePattern | None:
        """The pattern of one ignore-file line; None for blank lines and comments."""
        if line.startswith("#"):
            return None
        pattern = line.strip()
        if not pattern:
            return None
        exclusion = pattern.startswith("!")
        if exclusion:
            pattern = pattern[1:].strip()
            if not pattern:
                raise DockerContextError('illegal exclusion pattern: "!"')
        pattern = _go_clean(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern[1:]
        return cls(pattern, exclusion, re.compile(_to_regex(pattern)))

    def matches(self, path: str) -> bool:
        """True when the pattern matches ``path`` or one of its parent directories."""
        if self.regex.match(path):
            return True
        parts = path.split("/")
        return any(self.regex.match("/".join(parts[:i])) for i in range(1, len(parts)))

    def literal_prefix(self) -> str:
        """The pattern up to its first wildcard (for pruning directories that nothing re-includes)."""
        match = re.search(r"[*?\[\\]", self.text)
        return self.text if match is None else self.text[: match.start()]


def _to_regex(pattern: str) -> str:
    """moby/patternmatcher's translation of a cleaned pattern to an anchored regular expression."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":  # "**/" is "**"
                    i += 1
                # "**" at the end matches everything below; elsewhere any number of whole segments
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise DockerContextError(f"syntax error in pattern {pattern!r}: unclosed '['")
            body = pattern[i + 1 : end]
            if body.startswith("!"):  # filepath.Match accepts both negations
                body = "^" + body[1:]
            out.append("[" + body + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


@dataclass(frozen=True)
class IgnoreMatcher:
    """The patterns of one ignore file, in order."""

    patterns: tuple[IgnorePattern, ...]

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> IgnoreMatcher:
        found = []
        for index, line in enumerate(lines):
            if index == 0:
                line = line.removeprefix("\ufeff")
            pattern = IgnorePattern.parse(line)
            if pattern is not None:
                found.append(pattern)
        return cls(tuple(found))

    @classmethod
    def from_file(cls, path: Path) -> IgnoreMatcher:
        return cls.from_lines(path.read_text(encoding="utf-8").splitlines())

    def excluded(self, path: str) -> bool:
        """Whether the context path (relative, ``/``-separated) is left out of the build context."""
        path = _go_clean(path).lstrip("/")
        matched = False
        for pattern in self.patterns:
            # an inclusion cannot change an already excluded path, nor an exception an included one
            if pattern.exclusion != matched:
                continue
            if pattern.matches(path):
                matched = not pattern.exclusion
        return matched

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether some ``!`` pattern could re-include a path below an excluded ``directory``."""
        prefix = directory.rstrip("/") + "/"
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            literal = pattern.literal_prefix()
            if literal.startswith(prefix) or prefix.startswith(literal):
                return True
        return False


def context_files(root: Path, matcher: IgnoreMatcher) -> set[str]:
    """Every file of the context rooted at ``root`` that survives ``matcher`` (relative, ``/``-separated)."""
    kept: set[str] = set()

    def walk(directory: Path, relative: str) -> Iterator[str]:
        for entry in sorted(directory.iterdir()):
            path = f"{relative}/{entry.name}" if relative else entry.name
            if entry.is_dir() and not entry.is_symlink():
                if matcher.excluded(path) and not matcher.may_reinclude_below(path):
                    continue
                yield from walk(entry, path)
            elif not matcher.excluded(path):
                yield path

    kept.update(walk(root, ""))
    return kept


def build_context(root: Path, ignore_file: Path, destination: Path) -> set[str]:
    """Copy the files of ``root`` that survive ``ignore_file`` to ``destination``; returns their paths."""
    files = context_files(root, IgnoreMatcher.from_file(ignore_file))
    for relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    return files


# --- Dockerfiles ---


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile (comments dropped, ``\\`` continuation lines joined)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending.strip():
        logical.append(pending)
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), " ".join(arguments.split())
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            if keyword != "ARG":
                raise DockerContextError(f"{path}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None


def parse_copy(instruction: Instruction) -> Copy:
    """The sources and destination of a ``COPY``/``ADD`` (shell or JSON form, ``--flags`` skipped)."""
    arguments = instruction.arguments
    words = shlex.split(arguments) if not arguments.lstrip().startswith("[") else []
    from_stage = None
    flags = [w for w in words if w.startswith("--")]
    for flag in flags:
        if flag.startswith("--from="):
            from_stage = flag.split("=", 1)[1]
    rest = [w for w in words if not w.startswith("--")]
    if not words:
        flag_free = re.sub(r"^(--\S+\s+)*", "", arguments)
        rest = json.loads(flag_free)
    if len(rest) < 2:
        raise DockerContextError(f"{instruction.keyword} needs a source and a destination: {arguments}")
    return Copy(tuple(rest[:-1]), rest[-1], from_stage)


def copied_from_context(stages: list[Stage]) -> list[str]:
    """Every context path the Dockerfile copies (``COPY --from`` another stage excluded)."""
    sources: list[str] = []
    for stage in stages:
        for instruction in stage.of("COPY") + stage.of("ADD"):
            copy = parse_copy(instruction)
            if copy.from_stage is None:
                sources.extend(copy.sources)
    return sources


def apply_copies(stage: Stage, context: Path, image_root: Path) -> Path:
    """Run ``stage``'s WORKDIR and context COPY instructions with ``image_root`` as the image's ``/``.

    Returns the final working directory (inside ``image_root``). Raises :class:`DockerContextError` for a
    source that is not in the context, as ``docker build`` does ("not found").
    """
    workdir = image_root
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = image_root / instruction.arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword in {"COPY", "ADD"}:
            copy = parse_copy(instruction)
            if copy.from_stage is not None:
                continue
            target = (
                image_root / copy.destination.lstrip("/")
                if copy.destination.startswith("/")
                else workdir / copy.destination
            )
            for source in copy.sources:
                matches = _sources(context, source)
                if not matches:
                    raise DockerContextError(f"{instruction.keyword} {source}: not found in the context")
                for match in matches:
                    into_dir = copy.destination.endswith("/") or len(copy.sources) > 1
                    if match.is_dir():
                        shutil.copytree(match, target, dirs_exist_ok=True)
                    else:
                        destination = target / match.name if into_dir else target
                        destination.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(match, destination)
    return workdir


def _sources(context: Path, source: str) -> list[Path]:
    """The context paths a COPY source names (Go ``filepath.Match`` wildcards, no ``/`` crossing)."""
    source = _go_clean(source).lstrip("/")
    if not re.search(r"[*?\[]", source):
        return [context / source] if (context / source).exists() else []
    regex = re.compile(_to_regex(source))
    return sorted(p for p in context.rglob("*") if regex.match(p.relative_to(context).as_posix()))
