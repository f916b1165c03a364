"""Read profile YAML safely, resolve ``extends:``, validate, and say exactly where it is wrong.

A profile is a YAML mapping validated by :class:`goldsmith.model.profile.Profile`. This module
adds what the schema cannot do on its own:

- **Safe reading.** Files over :data:`MAX_BYTES` are refused before parsing; aliases (and with
  them merge keys and "billion laughs" expansion) are refused; nesting deeper than
  :data:`MAX_DEPTH` and more than :data:`MAX_NODES` nodes are refused; keys must be plain
  strings and unique at every depth; only the plain YAML scalar types (string, integer, float,
  boolean, null, date/timestamp) are built, never objects. Booleans follow YAML 1.2
  (``true``/``false`` only), so ``no``, ``on`` and ``yes`` stay strings.
- **Positions.** Every key and value keeps the file, line and column it came from, through the
  ``extends:`` merge, so a validation error names the file that provided the offending value:
  ``my.yaml:4:3: image.hostname: String should match pattern ...``. The position is that of
  the key holding the bad value (of the item itself inside a list; of the mapping's own key for
  an error about a whole mapping). All validation errors are reported at once.
- **extends.** ``extends: <shipped name | relative path>`` at the top of a file makes it a set of
  overrides on another profile. Mappings merge key by key at any depth; any other value
  (scalars, lists) replaces the inherited one. A key written with a ``+`` suffix
  (``include+: [git]``) appends its list to the inherited list instead of replacing it; the
  inherited value must exist and be a list. Chains are followed to :data:`MAX_EXTENDS` levels;
  a cycle is an error at the ``extends:`` that closes it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from goldsmith.errors import ProfileError
from goldsmith.model.profile import Profile

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_EXTENDS",
    "MAX_NODES",
    "SHIPPED_PREFIX",
    "LoadedProfile",
    "dump_resolved_yaml",
    "list_shipped",
    "load_profile",
    "profile_json_schema",
    "shipped_path",
]

MAX_BYTES = 1024 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 64
MAX_EXTENDS = 16
#: how a shipped profile is named in ``sources`` and error positions (stable across machines)
SHIPPED_PREFIX = "goldsmith:profiles/"

_SHIPPED_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_EXTENDS_KEY = "extends"
_APPEND_SUFFIX = "+"

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


@dataclass(frozen=True)
class LoadedProfile:
    """A validated profile and where it came from."""

    profile: Profile
    #: the files of the extends chain in merge order: the root first, the named file last
    sources: tuple[str, ...]
    #: sha256 (hex) of the canonical JSON of the resolved profile (defaults included)
    digest: str
    #: key path ("controls.sshd.port.params.value") -> (file, line, column) of the key
    positions: dict[str, tuple[str, int, int]] = field(default_factory=dict, compare=False)

    def position(self, key_path: str) -> tuple[str, int, int] | None:
        """Where a key of the resolved profile was written (after extends:), if it was."""
        return self.positions.get(key_path)


# public API -----------------------------------------------------------------------------------


def load_profile(ref: str) -> LoadedProfile:
    """Load a shipped profile by name (``nanoclaw-debian13``) or a profile YAML file by path.

    A ``ref`` containing a ``/`` or ending in ``.yaml``/``.yml`` is a path; otherwise a shipped
    name, or failing that an existing file of that name. Raises :class:`ProfileError` naming
    file, line, column and key.
    """
    if _looks_like_path(ref) or (ref not in list_shipped() and Path(ref).is_file()):
        source = _Source.from_path(Path(ref), display=ref)
    else:
        source = _Source.shipped(ref, at=None)
    tree, sources = _resolve(source, chain=())
    data = tree.plain()
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, tree, sources) from None
    return LoadedProfile(
        profile=profile,
        sources=sources,
        digest=profile_digest(profile),
        positions=dict(_key_positions(tree)),
    )


def _key_positions(node: _Value, prefix: str = "") -> Iterator[tuple[str, tuple[str, int, int]]]:
    if isinstance(node, _Map):
        for key, entry in node.entries.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path, (entry.key_pos.file, entry.key_pos.line, entry.key_pos.column)
            yield from _key_positions(entry.value, path)


def list_shipped() -> list[str]:
    """Names of the profiles shipped with goldsmith, sorted."""
    folder = importlib.resources.files("goldsmith") / "profiles"
    if not folder.is_dir():
        return []
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml") and _SHIPPED_NAME_RE.match(entry.name.removesuffix(".yaml"))
    )


def shipped_path(name: str) -> Path:
    """Host path of a shipped profile's YAML (for tools that want to open it)."""
    if name not in list_shipped():
        raise ProfileError(
            f"no shipped profile named {name!r}",
            hint=f"shipped profiles: {', '.join(list_shipped()) or 'none'}",
        )
    return Path(str(importlib.resources.files("goldsmith") / "profiles" / f"{name}.yaml"))


def profile_digest(profile: Profile) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of a resolved profile."""
    canonical = json.dumps(
        profile.model_dump(mode="json"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def profile_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a profile file: the Profile model plus ``extends``."""
    schema = Profile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://goldsmith.invalid/schema/profile.json"
    schema["properties"] = {
        _EXTENDS_KEY: {
            "type": "string",
            "title": "Extends",
            "description": (
                "A shipped profile name or a path relative to this file. Mappings merge key by "
                "key; other values replace the inherited ones; a key ending in '+' appends its "
                "list to the inherited list. Keys required by the resolved profile (name) may "
                "come from the extended profile."
            ),
        },
        **schema.get("properties", {}),
    }
    return schema


def dump_resolved_yaml(profile: Profile) -> str:
    """The resolved profile as YAML, in schema order; loading it gives the same profile."""
    data = profile.model_dump(mode="json")
    text: str = yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
    return text


# sources --------------------------------------------------------------------------------------


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml")) or ref in (".", "..")


@dataclass(frozen=True)
class _Source:
    display: str  # what errors and ``sources`` show
    identity: str  # what cycle detection compares
    text: str
    directory: Path | None  # base for relative ``extends``; None for shipped profiles

    @classmethod
    def from_path(cls, path: Path, *, display: str, at: _Pos | None = None) -> _Source:
        key = _EXTENDS_KEY if at else None
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_BYTES + 1)  # never more: the size limit holds for pipes too
            identity = str(path.resolve())
        except FileNotFoundError:
            raise _error_at(at, f"profile file {display!r} does not exist", key=key) from None
        except IsADirectoryError:
            raise _error_at(at, f"{display!r} is a directory, not a YAML file", key=key) from None
        except OSError as exc:
            raise _error_at(at, f"cannot read {display!r}: {exc.strerror}", key=key) from None
        return cls(
            display=display,
            identity=identity,
            text=_decode(raw, display),
            directory=path.parent,
        )

    @classmethod
    def shipped(cls, name: str, *, at: _Pos | None) -> _Source:
        names = list_shipped()
        if name not in names:
            raise _error_at(
                at,
                f"no shipped profile named {name!r}",
                key=_EXTENDS_KEY if at else None,
                hint=(
                    f"shipped profiles: {', '.join(names) or 'none'}; "
                    "a file path needs a '/' or a .yaml suffix (./my.yaml)"
                ),
            )
        resource = importlib.resources.files("goldsmith") / "profiles" / f"{name}.yaml"
        raw = resource.read_bytes()
        display = f"{SHIPPED_PREFIX}{name}.yaml"
        return cls(display=display, identity=display, text=_decode(raw, display), directory=None)


def _decode(raw: bytes, display: str) -> str:
    if len(raw) > MAX_BYTES:
        raise ProfileError(
            f"profile is larger than {MAX_BYTES} bytes; refusing to parse it",
            file=display,
            hint="a profile is a short YAML file; check that the right file was given",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw[:line_start].count(b"\n") + 1
        # in characters, as YAML positions are
        column = len(raw[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        raise ProfileError(
            "profile is not valid UTF-8", file=display, line=line, column=column
        ) from None


# positions and the located tree ---------------------------------------------------------------


@dataclass(frozen=True)
class _Pos:
    file: str
    line: int  # 1-based
    column: int  # 1-based


def _error_at(
    at: _Pos | None, message: str, *, key: str | None = None, hint: str | None = None
) -> ProfileError:
    if at is None:
        return ProfileError(message, key=key, hint=hint)
    return ProfileError(message, file=at.file, line=at.line, column=at.column, key=key, hint=hint)


class _Value:
    pos: _Pos

    def plain(self) -> Any:
        raise NotImplementedError


_V = TypeVar("_V", bound=_Value)


@dataclass
class _Scalar(_Value):
    value: Any
    pos: _Pos

    def plain(self) -> Any:
        return self.value


@dataclass
class _Seq(_Value):
    items: list[_Value]
    pos: _Pos

    def plain(self) -> Any:
        return [item.plain() for item in self.items]


@dataclass
class _Entry:
    key_pos: _Pos
    value: _Value


@dataclass
class _Map(_Value):
    entries: dict[str, _Entry]
    pos: _Pos

    def plain(self) -> Any:
        return {key: entry.value.plain() for key, entry in self.entries.items()}


def _pos(node: Node, file: str) -> _Pos:
    mark = node.start_mark
    return _Pos(file, mark.line + 1, mark.column + 1)


class _Capped:
    """Composer mixin that refuses aliases and caps nodes and depth while composing."""

    check_event: Any
    peek_event: Any

    _nodes = 0
    _depth = 0

    def _mark(self) -> Mark:
        mark: Mark = self.peek_event().start_mark
        return mark

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            raise ComposerError(
                None,
                None,
                "aliases (*name) are not allowed in profiles; write the value out",
                self._mark(),
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} YAML nodes", self._mark())
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels",
                    self._mark(),
                )
            node: Node | None = super().compose_node(parent, index)  # type: ignore[misc]
            return node
        finally:
            self._depth -= 1


class _SafeLoader(_Capped, yaml.SafeLoader):
    """The reference loader: PyYAML's pure-Python reader, scanner and parser."""


try:  # PyYAML built with libyaml (its wheels are)
    from yaml._yaml import CParser as _Events

    _FAST = True
except ImportError:  # pragma: no cover - a PyYAML without libyaml: the reference loader only
    _Events = yaml.parser.Parser  # type: ignore[assignment,misc]
    _FAST = False


class _FastLoader(
    _Capped,
    yaml.composer.Composer,
    _Events,
    yaml.constructor.SafeConstructor,
    yaml.resolver.Resolver,
):
    """libyaml's scanner and parser (about 10x faster) under the same capped Python composer,
    so nodes, marks, caps and alias refusal are the same. Used only when it accepts a file:
    any YAML error is decided by the reference loader (the two scanners refuse slightly
    different inputs; libyaml refuses ``"\\ud800"`` escapes, for one)."""

    def __init__(self, stream: str) -> None:
        _Events.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


# YAML 1.2 booleans: only true/false. "no", "on", "yes" stay strings (no Norway problem).
# The "=" value tag has no safe constructor; treat "=" as a string.
_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG + "bool", _TAG + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SafeLoader.add_implicit_resolver(_TAG + "bool", _BOOL_RE, list("tTfF"))
_FastLoader.yaml_implicit_resolvers = _SafeLoader.yaml_implicit_resolvers


def _parse(source: _Source) -> _Map:
    """Parse one file into a located tree; the top level must be a mapping (empty is {})."""
    if _FAST:
        fast = _FastLoader(source.text)
        try:
            root = fast.get_single_node()
        except yaml.YAMLError:
            pass  # the reference loader decides: the same error, or (rarely) a value
        else:
            return _tree(root, fast, source)
        finally:
            fast.dispose()
    loader = _SafeLoader(source.text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, source.display) from None
    except yaml.YAMLError as exc:  # errors without a position (e.g. reader errors)
        raise ProfileError(f"invalid YAML: {exc}", file=source.display) from None
    finally:
        loader.dispose()
    return _tree(root, loader, source)


def _tree(root: Node | None, loader: Any, source: _Source) -> _Map:
    """The located tree of a composed document (constructing its scalars with ``loader``)."""
    if root is None:
        return _Map({}, _Pos(source.display, 1, 1))
    try:
        value = _build(root, loader, source.display)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, source.display) from None
    if not isinstance(value, _Map):
        raise ProfileError(
            "a profile must be a YAML mapping (key: value lines) at the top level",
            file=value.pos.file,
            line=value.pos.line,
            column=value.pos.column,
        )
    return value


def _yaml_error(exc: yaml.MarkedYAMLError, display: str) -> ProfileError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context and exc.context_mark is not None and exc.problem_mark is not None:
        ctx_line = exc.context_mark.line + 1
        problem = f"{problem} ({exc.context} at line {ctx_line})"
    if mark is None:
        return ProfileError(f"invalid YAML: {problem}", file=display)
    return ProfileError(
        f"invalid YAML: {problem}", file=display, line=mark.line + 1, column=mark.column + 1
    )


def _build(node: Node, loader: Any, file: str, path: str = "") -> _Value:
    pos = _pos(node, file)
    if isinstance(node, ScalarNode):
        if node.tag not in _SCALAR_TAGS:
            raise ProfileError(
                f"YAML tag {node.tag!r} is not allowed; only plain strings, numbers, booleans, "
                "null and dates",
                file=file,
                line=pos.line,
                column=pos.column,
            )
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _yaml_error(exc, file) from None
        except ValueError:
            # an impossible date such as 2026-02-30: hand the text to validation, which
            # reports it with its key path among the other errors
            value = str(node.value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ProfileError(
                "infinite and NaN numbers are not allowed",
                file=file,
                line=pos.line,
                column=pos.column,
            )
        return _Scalar(value, pos)
    if isinstance(node, SequenceNode):
        if node.tag != _TAG + "seq":
            raise ProfileError(
                f"YAML tag {node.tag!r} is not allowed on a list",
                file=file,
                line=pos.line,
                column=pos.column,
            )
        items = [_build(item, loader, file, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return _Seq(items, pos)
    if isinstance(node, MappingNode):
        if node.tag != _TAG + "map":
            raise ProfileError(
                f"YAML tag {node.tag!r} is not allowed on a mapping",
                file=file,
                line=pos.line,
                column=pos.column,
            )
        entries: dict[str, _Entry] = {}
        for key_node, value_node in node.value:
            key_pos = _pos(key_node, file)
            if key_node.tag == _TAG + "merge":
                raise ProfileError(
                    "merge keys (<<) are not allowed in profiles; use extends: instead",
                    file=file,
                    line=key_pos.line,
                    column=key_pos.column,
                )
            if not isinstance(key_node, ScalarNode) or key_node.tag != _TAG + "str":
                shown = key_node.value if isinstance(key_node, ScalarNode) else "a collection"
                raise ProfileError(
                    f"keys must be strings, not {shown!r} (quote it if it is meant as text)",
                    file=file,
                    line=key_pos.line,
                    column=key_pos.column,
                    key=path or None,
                )
            key = str(key_node.value)
            if key in entries:
                first = entries[key].key_pos
                raise ProfileError(
                    f"duplicate key {key!r} (first given at line {first.line})",
                    file=file,
                    line=key_pos.line,
                    column=key_pos.column,
                    key=_join(path, key),
                )
            entries[key] = _Entry(key_pos, _build(value_node, loader, file, _join(path, key)))
        return _Map(entries, pos)
    raise ProfileError(  # pragma: no cover - the composer builds only these three node kinds
        f"unexpected YAML node {type(node).__name__}", file=file, line=pos.line, column=pos.column
    )


# extends ---------------------------------------------------------------------------------------


def _resolve(source: _Source, chain: tuple[str, ...]) -> tuple[_Map, tuple[str, ...]]:
    """Parse a file and everything it extends; return the merged tree and the sources used."""
    tree = _parse(source)
    chain = (*chain, source.identity)
    entry = tree.entries.pop(_EXTENDS_KEY, None)
    if entry is None:
        return _reject_append_keys(tree, ""), (source.display,)
    ref_value = entry.value
    at = entry.key_pos
    if not isinstance(ref_value, _Scalar) or not isinstance(ref_value.value, str):
        raise _error_at(at, "must be a shipped profile name or a relative path", key=_EXTENDS_KEY)
    ref = ref_value.value.strip()
    if len(chain) >= MAX_EXTENDS:
        raise _error_at(at, f"extends chain longer than {MAX_EXTENDS} files", key=_EXTENDS_KEY)
    if _looks_like_path(ref):
        if source.directory is None:
            raise _error_at(
                at, "a shipped profile can only extend other shipped profiles", key=_EXTENDS_KEY
            )
        target = Path(ref)
        path = target if target.is_absolute() else source.directory / target
        parent = _Source.from_path(path, display=os.path.normpath(path), at=at)
    else:
        parent = _Source.shipped(ref, at=at)
    if parent.identity in chain:
        names = [*chain[chain.index(parent.identity) :], parent.identity]
        raise _error_at(at, "extends cycle: " + " -> ".join(names), key=_EXTENDS_KEY)
    base, sources = _resolve(parent, chain)
    return _merge(base, tree, ""), (*sources, source.display)


def _merge(base: _Map, over: _Map, path: str) -> _Map:
    """Deep-merge ``over`` onto ``base``; every value keeps the position of the file it is from."""
    entries = dict(base.entries)
    for key, entry in over.entries.items():
        if key.endswith(_APPEND_SUFFIX):
            name = key[: -len(_APPEND_SUFFIX)]
            _check_append_pair(over, key, name, path)
            inherited = entries.get(name)
            if inherited is None:
                raise _error_at(
                    entry.key_pos,
                    f"nothing to append to: no extended profile sets {name!r}",
                    key=_join(path, key),
                    hint=f"write {name}: [...] to set the whole list",
                )
            if not isinstance(inherited.value, _Seq) or not isinstance(entry.value, _Seq):
                raise _error_at(
                    entry.key_pos, f"{key} appends a list to a list", key=_join(path, key)
                )
            merged_items = [*inherited.value.items, *entry.value.items]
            entries[name] = _Entry(entry.key_pos, _Seq(merged_items, entry.value.pos))
            continue
        old = entries.get(key)
        if old is not None and isinstance(old.value, _Map) and isinstance(entry.value, _Map):
            entries[key] = _Entry(entry.key_pos, _merge(old.value, entry.value, _join(path, key)))
        else:
            entries[key] = _Entry(entry.key_pos, _reject_append_keys(entry.value, _join(path, key)))
    return _Map(entries, over.pos)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_append_pair(mapping: _Map, key: str, name: str, path: str) -> None:
    if name in mapping.entries:
        raise _error_at(
            mapping.entries[key].key_pos,
            f"both {name!r} and {key!r} given; use one",
            key=_join(path, key),
        )


def _reject_append_keys(value: _V, path: str) -> _V:
    """Check a value that has nothing inherited under it: a ``key+`` there has nothing to extend."""
    if isinstance(value, _Map):
        for key, entry in value.entries.items():
            if key.endswith(_APPEND_SUFFIX):
                raise _error_at(
                    entry.key_pos,
                    f"nothing to append to: no extended profile sets {key[:-1]!r}",
                    key=_join(path, key),
                    hint=f"write {key[:-1]}: [...] to set the whole list",
                )
            _reject_append_keys(entry.value, _join(path, key))
    elif isinstance(value, _Seq):
        for i, item in enumerate(value.items):
            _reject_append_keys(item, f"{path}[{i}]")
    return value


# validation errors -> positions ---------------------------------------------------------------


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _locate(tree: _Map, loc: tuple[int | str, ...]) -> tuple[_Pos, tuple[int | str, ...]]:
    """Position of the deepest node of ``loc`` that exists, and the part of loc it covers."""
    pos = tree.pos
    node: _Value = tree
    walked: list[int | str] = []
    for part in loc:
        if isinstance(node, _Map) and isinstance(part, str) and part in node.entries:
            entry = node.entries[part]
            pos, node = entry.key_pos, entry.value
        elif isinstance(node, _Seq) and isinstance(part, int) and 0 <= part < len(node.items):
            node = node.items[part]
            pos = node.pos
        else:
            break
        walked.append(part)
    return pos, tuple(walked)


def _iter_errors(exc: ValidationError, tree: _Map) -> Iterator[tuple[_Pos, str, str]]:
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        pos, walked = _locate(tree, loc)
        # union/function branches ("function-after[...]", "str") are not keys of the file
        shown = loc if len(walked) == len(loc) else _clean_loc(loc, walked)
        message = str(err["msg"])
        if err["type"] == "extra_forbidden":
            message = "unknown key" + _suggest(loc)
        elif err["type"] == "string_type" and isinstance(err.get("input"), int | float):
            message += f' (write it in quotes: "{err["input"]}")'
        elif err["type"] == "missing":
            message = "required key is missing"
        yield pos, _key_path(shown), message


def _clean_loc(loc: tuple[int | str, ...], walked: tuple[int | str, ...]) -> tuple[int | str, ...]:
    rest = [p for p in loc[len(walked) :] if not (isinstance(p, str) and ("[" in p or p == "str"))]
    return (*walked, *rest)


def _suggest(loc: tuple[int | str, ...]) -> str:
    """' (did you mean ...?)' for an unknown key close to a known one."""
    model: Any = Profile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:  # a dict key such as a control id: the model stays the same
            continue
        model = _model_of(field.annotation)
        if model is None:
            return ""
    known = list(getattr(model, "model_fields", {}))
    if not known:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside an annotation (``Siem | None``, ``dict[str, X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _validation_error(exc: ValidationError, tree: _Map, sources: tuple[str, ...]) -> ProfileError:
    # the named file's errors first (the one being edited), then its parents', each by position
    rank = {name: i for i, name in enumerate(reversed(sources))}
    found = sorted(
        set(_iter_errors(exc, tree)),
        key=lambda e: (rank.get(e[0].file, len(rank)), e[0].line, e[0].column),
    )
    lines = [
        f"{p.file}:{p.line}:{p.column}: {key + ': ' if key else ''}{msg}" for p, key, msg in found
    ]
    first_pos, first_key, first_msg = found[0]
    # the first error is the exception's own position; every further one gets its own line
    message = "\n".join([first_msg, *lines[1:]])
    return ProfileError(
        message,
        file=first_pos.file,
        line=first_pos.line,
        column=first_pos.column,
        key=first_key or None,
        hint="goldsmith profile schema prints every key and its type",
    )
