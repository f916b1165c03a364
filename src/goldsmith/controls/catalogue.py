"""The control catalogue: YAML data shipped beside this module, loaded into ``Control`` objects.

``controls/catalogue/<NN>-<topic>.yaml`` holds, per CIS section, the controls that implement
recommendations (``controls:``) and the recommendations that are deliberately not automated
(``not_automated:``, manual or not applicable, each with its reason). Loading is strict:
unknown keys, duplicate keys, duplicate control ids, CIS ids that are not in the benchmark
lists and rules that do not build are all :class:`ProfileError`\\ s naming file, line and key.

``coverage`` answers "which L1/L2 Server recommendations of a benchmark are automated, which
are not and why, and which are missing" from the benchmark lists shipped beside the data
(``cis-debian13-v1.0.0.tsv``, ``cis-debian12-v1.1.0.tsv``).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeGuard, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from goldsmith.cache import ContentCache, code_cache
from goldsmith.controls.base import REFERENCE_KEYS, Control
from goldsmith.controls.registry import build_rule
from goldsmith.errors import ProfileError

if TYPE_CHECKING:
    from yaml.nodes import Node

__all__ = [
    "BENCHMARK_FILES",
    "Benchmark",
    "Catalogue",
    "Coverage",
    "NotAutomated",
    "NotAutomatedKind",
    "Recommendation",
    "benchmark_recommendations",
    "catalogue_dir",
    "coverage",
    "load_catalogue",
]

Benchmark = Literal["cis-debian13", "cis-debian12"]
#: benchmark key -> the recommendation list shipped beside the catalogue data
BENCHMARK_FILES: Mapping[Benchmark, str] = MappingProxyType(
    {
        "cis-debian13": "cis-debian13-v1.0.0.tsv",
        "cis-debian12": "cis-debian12-v1.1.0.tsv",
    }
)
#: profile levels that count: Level 1 and Level 2 Server
SERVER_LEVELS = ("L1S", "L2S")
#: how catalogue files are named in errors (stable across machines)
DISPLAY_PREFIX = "goldsmith:controls/catalogue/"

CONTROL_ID_RE = r"^[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)+$"
CIS_ID_RE = r"^[0-9]+(?:\.[0-9]+){1,4}$"

CisId = Annotated[str, Field(pattern=CIS_ID_RE)]
Soc2Id = Annotated[str, Field(pattern=r"^(?:CC|A|C|PI|P)[0-9]+\.[0-9]+$")]
Iso2013Id = Annotated[str, Field(pattern=r"^A\.(?:[5-9]|1[0-8])\.[0-9]+\.[0-9]+$")]
Iso2022Id = Annotated[str, Field(pattern=r"^A\.[5-8]\.[0-9]+$")]


class NotAutomatedKind(StrEnum):
    MANUAL = "manual"  # a decision or review only people can make
    NOT_APPLICABLE = "not_applicable"  # the image's design makes the recommendation moot


# public records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotAutomated:
    """A recommendation the catalogue deliberately does not automate, and why."""

    #: benchmark key -> CIS id (one or both benchmarks)
    ids: Mapping[Benchmark, str]
    kind: NotAutomatedKind
    reason: str
    file: str
    line: int


@dataclass(frozen=True)
class Catalogue:
    #: control id -> control, in file order (files sorted by name)
    controls: Mapping[str, Control]
    not_automated: tuple[NotAutomated, ...]
    #: control id -> "file:line" of its entry
    origins: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, control_id: str) -> Control:
        """The control with this id; ProfileError (with close matches) if there is none."""
        found = self.controls.get(control_id)
        if found is None:
            import difflib

            close = difflib.get_close_matches(control_id, list(self.controls), n=3)
            raise ProfileError(
                f"no control {control_id!r} in the catalogue",
                key=f"controls.{control_id}",
                hint=("did you mean: " + ", ".join(close)) if close else None,
            )
        return found

    def referencing(self, benchmark: Benchmark, cis_id: str) -> tuple[Control, ...]:
        """The controls that reference one recommendation of a benchmark."""
        return tuple(c for c in self.controls.values() if cis_id in c.references.get(benchmark, ()))


@dataclass(frozen=True)
class Recommendation:
    id: str
    level: str  # L1S, L2S (other levels are not listed)
    title: str

    @property
    def level_number(self) -> int:
        return int(self.level[1])


@dataclass(frozen=True)
class Coverage:
    benchmark: Benchmark
    #: every L1S/L2S recommendation of the benchmark, in benchmark order
    recommendations: tuple[Recommendation, ...]
    #: CIS id -> ids of the controls that implement it
    automated: Mapping[str, tuple[str, ...]]
    #: CIS id -> the not-automated entry (kind and reason)
    not_automated: Mapping[str, NotAutomated]
    #: recommendations neither automated nor listed as not automated
    missing: tuple[str, ...]
    #: recommendations both referenced by a control and listed as not automated
    conflicting: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.recommendations)

    @property
    def percent_automated(self) -> float:
        if not self.recommendations:
            return 0.0
        return 100.0 * len(self.automated) / len(self.recommendations)

    def count(self, kind: NotAutomatedKind) -> int:
        return sum(1 for n in self.not_automated.values() if n.kind is kind)


# loading --------------------------------------------------------------------------------------


def catalogue_dir() -> Traversable:
    """The shipped catalogue data directory (YAML files and the benchmark lists)."""
    return importlib.resources.files("goldsmith.controls") / "catalogue"


@cache
def _default_catalogue() -> Catalogue:
    folder = catalogue_dir()
    files = sorted((e for e in folder.iterdir() if e.name.endswith(".yaml")), key=lambda e: e.name)
    return _load([(DISPLAY_PREFIX + e.name, e.read_text(encoding="utf-8")) for e in files])


def load_catalogue(directory: Path | None = None) -> Catalogue:
    """Load the shipped catalogue (cached), or every ``*.yaml`` of ``directory``.

    Raises :class:`ProfileError` naming file, line and key of the first bad entry.
    """
    if directory is None:
        return _default_catalogue()
    paths = sorted(directory.glob("*.yaml"))
    sources = []
    for p in paths:
        try:
            sources.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"cannot read catalogue file: {exc}", file=str(p)) from None
    return _load(sources)


@cache
def benchmark_recommendations(benchmark: Benchmark) -> tuple[Recommendation, ...]:
    """The Level 1 and Level 2 Server recommendations of a benchmark, in its order."""
    if benchmark not in BENCHMARK_FILES:
        raise ProfileError(
            f"unknown benchmark {benchmark!r}", hint="known: " + ", ".join(BENCHMARK_FILES)
        )
    text = (catalogue_dir() / BENCHMARK_FILES[benchmark]).read_text(encoding="utf-8")
    out: list[Recommendation] = []
    for raw in text.splitlines():
        cols = raw.split("\t")
        if raw.startswith("#") or len(cols) < 3 or cols[1] not in SERVER_LEVELS:
            continue
        out.append(Recommendation(cols[0].strip(), cols[1], cols[2].strip()))
    return tuple(out)


def coverage(catalogue: Catalogue, benchmark: Benchmark) -> Coverage:
    """How the catalogue covers the L1S + L2S recommendations of ``benchmark``."""
    recs = benchmark_recommendations(benchmark)
    automated: dict[str, list[str]] = {}
    for control in catalogue.controls.values():
        for cis_id in control.references.get(benchmark, ()):
            automated.setdefault(cis_id, []).append(control.id)
    listed = {n.ids[benchmark]: n for n in catalogue.not_automated if benchmark in n.ids}
    ids = [r.id for r in recs]
    return Coverage(
        benchmark=benchmark,
        recommendations=recs,
        automated=MappingProxyType({i: tuple(automated[i]) for i in ids if i in automated}),
        not_automated=MappingProxyType(
            {i: listed[i] for i in ids if i in listed and i not in automated}
        ),
        missing=tuple(i for i in ids if i not in automated and i not in listed),
        conflicting=tuple(i for i in ids if i in automated and i in listed),
    )


# YAML schema ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class _References(_Strict):
    cis_debian13: list[CisId] = Field(default=[], alias="cis-debian13")
    cis_debian12: list[CisId] = Field(default=[], alias="cis-debian12")
    soc2: list[Soc2Id] = []
    iso27001_2013: list[Iso2013Id] = Field(default=[], alias="iso27001-2013")
    iso27001_2022: list[Iso2022Id] = Field(default=[], alias="iso27001-2022")

    def as_mapping(self) -> dict[str, tuple[str, ...]]:
        dumped = self.model_dump(by_alias=True)
        return {k: tuple(dumped[k]) for k in REFERENCE_KEYS if dumped.get(k)}


class _ControlEntry(_Strict):
    id: Annotated[str, Field(pattern=CONTROL_ID_RE, max_length=80)]
    title: Annotated[str, Field(min_length=5)]
    rationale: Annotated[str, Field(min_length=20)]
    level: Literal[1, 2]
    rule: dict[str, Any]
    references: _References


class _NotAutomatedEntry(_Strict):
    cis_debian13: CisId | None = Field(default=None, alias="cis-debian13")
    cis_debian12: CisId | None = Field(default=None, alias="cis-debian12")
    kind: NotAutomatedKind
    reason: Annotated[str, Field(min_length=20)]

    @model_validator(mode="after")
    def _one_id(self) -> _NotAutomatedEntry:
        if self.cis_debian13 is None and self.cis_debian12 is None:
            raise ValueError("give cis-debian13, cis-debian12 or both")
        return self

    def ids(self) -> dict[Benchmark, str]:
        out: dict[Benchmark, str] = {}
        if self.cis_debian13 is not None:
            out["cis-debian13"] = self.cis_debian13
        if self.cis_debian12 is not None:
            out["cis-debian12"] = self.cis_debian12
        return out


class _CatalogueFile(_Strict):
    controls: list[_ControlEntry] = []
    not_automated: list[_NotAutomatedEntry] = []


# parsed files and their cache ---------------------------------------------------------------


@cache
def _parse_cache() -> ContentCache:
    """Parsed catalogue files (see :mod:`goldsmith.cache`): what a text parses to is decided by
    this module, the parser module and PyYAML."""
    return code_cache(
        "catalogue-parse", files=[__file__], modules=["goldsmith.controls.catalogue_yaml", "yaml"]
    )


class _Source:
    """One catalogue file: its plain data (from the parse cache when it holds this text) and,
    only when an error needs a position, its YAML nodes, composed afresh."""

    def __init__(self, file: str, text: str, cache: ContentCache) -> None:
        self.file = file
        self.text = text
        self._root: Node | None = None
        entry = cache.get(text)
        lines = entry.get("lines") if entry is not None else None
        if entry is not None and "data" in entry and _valid_lines(lines):
            self.data: Any = entry["data"]
            self._lines: dict[str, list[int]] = lines
            return
        from goldsmith.controls import catalogue_yaml

        self._root = root = catalogue_yaml.compose(text, file) or catalogue_yaml.null_node()
        self.data = (
            catalogue_yaml.plain(root, file, "") if root.tag != catalogue_yaml.NULL else None
        )
        self._lines = catalogue_yaml.entry_lines(root)
        cache.put(text, {"data": self.data, "lines": self._lines})

    @property
    def root(self) -> Node:
        if self._root is None:
            from goldsmith.controls import catalogue_yaml

            self._root = catalogue_yaml.compose(self.text, self.file) or catalogue_yaml.null_node()
        return self._root

    def line(self, section: str, index: int) -> int:
        """The 1-based line of entry ``index`` of ``section``."""
        known = self._lines.get(section, [])
        if index < len(known):
            return known[index]
        from goldsmith.controls.catalogue_yaml import find

        return find(self.root, [section, index]).start_mark.line + 1


def _key_text(data: Any, loc: Sequence[str | int]) -> str:
    """A readable key: ``controls[3](sysctl.ip-forward).rule.key``."""
    out = ""
    cur = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            item = cur[part] if isinstance(cur, list) and part < len(cur) else None
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                out += f"({item['id']})"
            cur = item
        else:
            out += f".{part}" if out else part
            cur = cur.get(part) if isinstance(cur, dict) else None
    return out


def _error(
    src: _Source, loc: Sequence[str | int], message: str, key: str | None, hint: str | None = None
) -> Exception:
    """A ProfileError at the node of ``loc`` in ``src`` (composed afresh if it was cached)."""
    from goldsmith.controls.catalogue_yaml import at, find

    return at(find(src.root, loc), src.file, message, key, hint)


def _valid_lines(lines: Any) -> TypeGuard[dict[str, list[int]]]:
    return isinstance(lines, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(type(n) is int for n in v)
        for k, v in lines.items()
    )


# the loader proper --------------------------------------------------------------------------


def _load(sources: Sequence[tuple[str, str]]) -> Catalogue:
    controls: dict[str, Control] = {}
    origins: dict[str, str] = {}
    not_automated: list[NotAutomated] = []
    listed: dict[tuple[Benchmark, str], str] = {}  # (benchmark, id) -> where it is listed
    known = {b: {r.id for r in benchmark_recommendations(b)} for b in get_args(Benchmark)}

    cache = _parse_cache()
    for file, text in sources:
        src = _Source(file, text, cache)
        data = src.data
        if data is None:
            continue
        try:
            parsed = _CatalogueFile.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [p for p in err["loc"] if isinstance(p, str | int)]
            raise _error(src, loc, err["msg"], _key_text(data, loc)) from None

        for i, entry in enumerate(parsed.controls):
            where = f"{file}:{src.line('controls', i)}"
            if entry.id in controls:
                raise _error(
                    src,
                    ["controls", i, "id"],
                    f"duplicate control id {entry.id!r}",
                    f"controls[{i}].id",
                    hint=f"first defined at {origins[entry.id]}",
                )
            refs = entry.references.as_mapping()
            for bench in get_args(Benchmark):
                for j, cis_id in enumerate(refs.get(bench, ())):
                    if cis_id not in known[bench]:
                        raise _error(
                            src,
                            ["controls", i, "references", bench, j],
                            f"{cis_id} is not a Level 1/2 Server recommendation of {bench}",
                            f"controls[{i}]({entry.id}).references.{bench}",
                            hint=f"see {BENCHMARK_FILES[bench]}",
                        )
            if not (refs.get("cis-debian13") or refs.get("cis-debian12")):
                raise _error(
                    src,
                    ["controls", i],
                    "a control needs at least one CIS reference",
                    f"controls[{i}]({entry.id}).references",
                )
            rule_type = entry.rule.get("type")
            try:
                # eagerly: a bad entry fails at load, not when a profile first uses it
                default_rule = build_rule(
                    entry.rule, control=entry.id, key=f"controls.{entry.id}.rule"
                )
            except ProfileError as exc:
                sub = (exc.key or "").removeprefix(f"controls.{entry.id}.rule").lstrip(".")
                loc = ["controls", i, "rule", *([sub.split(".")[0]] if sub else [])]
                message = exc.message.removeprefix(f"{exc.key}: ") if exc.key else exc.message
                raise _error(src, loc, message, exc.key, hint=exc.hint) from None
            assert isinstance(rule_type, str)
            controls[entry.id] = Control(
                id=entry.id,
                title=entry.title,
                rationale=" ".join(entry.rationale.split()),
                level=entry.level,
                rule_type=rule_type,
                params=MappingProxyType({k: v for k, v in entry.rule.items() if k != "type"}),
                references=MappingProxyType(refs),
                default_rule=default_rule,
            )
            origins[entry.id] = where

        for i, na in enumerate(parsed.not_automated):
            line = src.line("not_automated", i)
            where = f"{file}:{line}"
            for bench, cis_id in na.ids().items():
                if cis_id not in known[bench]:
                    raise _error(
                        src,
                        ["not_automated", i, bench],
                        f"{cis_id} is not a Level 1/2 Server recommendation of {bench}",
                        f"not_automated[{i}].{bench}",
                        hint=f"see {BENCHMARK_FILES[bench]}",
                    )
                if (bench, cis_id) in listed:
                    raise _error(
                        src,
                        ["not_automated", i],
                        f"{bench} {cis_id} is listed as not automated twice",
                        f"not_automated[{i}].{bench}",
                        hint=f"first listed at {listed[bench, cis_id]}",
                    )
                listed[bench, cis_id] = where
            not_automated.append(
                NotAutomated(
                    ids=MappingProxyType(na.ids()),
                    kind=na.kind,
                    reason=" ".join(na.reason.split()),
                    file=file,
                    line=line,
                )
            )

    return Catalogue(
        controls=MappingProxyType(controls),
        not_automated=tuple(not_automated),
        origins=MappingProxyType(origins),
    )
