"""YAML with positions, for the catalogue loader: compose with libyaml (when PyYAML has it)
into nodes that keep their line and column, turn nodes into plain data strictly, and find the
node of a key path for an error.

Its own module so that a warm catalogue load (parsed files served by :mod:`goldsmith.cache`)
does not import PyYAML at all; only a cache miss or an error does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from goldsmith.errors import ProfileError

#: the sections whose entries' lines the loader reports (``origins``, ``NotAutomated.line``)
LINE_SECTIONS = ("controls", "not_automated")

# YAML with positions ----------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
_STR_TAG = _TAG + "str"


#: libyaml's parser when PyYAML was built with it (composes ~25x faster); nodes keep their
#: line/column marks and errors their problem marks either way.
if TYPE_CHECKING:  # the C loader has the same interface; its stubs do not say so
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """SafeLoader with YAML 1.2 booleans (``no``/``yes``/``on`` stay strings: sshd values)."""

    #: the tag of each plain scalar text seen (the catalogue has ~14,000 scalars, mostly
    #: repeated words; resolving one runs the implicit-resolver regexes in Python)
    _plain_tags: ClassVar[dict[str, str]] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            tag = self._plain_tags.get(value)
            if tag is None:  # without path resolvers the answer depends on the text only
                tag = super().resolve(kind, value, (True, False))  # type: ignore[no-untyped-call]
                self._plain_tags[value] = tag
            return tag
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG + "bool", _TAG + "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def compose(text: str, file: str) -> Node | None:
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ProfileError(
            f"invalid YAML: {exc.problem or exc}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def plain(node: Node, file: str, path: str, ctor: yaml.SafeLoader | None = None) -> Any:
    """A node as plain data; refuses duplicate keys, aliases' tags and non-plain scalars."""
    if ctor is None:
        ctor = _Loader("")
    if isinstance(node, ScalarNode):
        if node.tag == _STR_TAG:  # most scalars; what SafeConstructor makes of them too
            return str(node.value)
        if node.tag not in _SCALAR_TAGS:
            raise at(node, file, f"YAML tag {node.tag!r} is not allowed", path)
        return ctor.construct_object(node, deep=True)
    if isinstance(node, SequenceNode):
        return [plain(n, file, f"{path}[{i}]", ctor) for i, n in enumerate(node.value)]
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            if not isinstance(k, ScalarNode) or k.tag != _TAG + "str":
                raise at(k, file, "keys must be plain strings", path)
            key = str(k.value)
            sub = f"{path}.{key}" if path else key
            if key in out:
                raise at(k, file, "key given twice", sub)
            out[key] = plain(v, file, sub, ctor)
        return out
    raise at(node, file, "unsupported YAML node", path)  # pragma: no cover


def at(node: Node, file: str, message: str, key: str | None, hint: str | None = None) -> Exception:
    mark = node.start_mark
    return ProfileError(
        message, file=file, line=mark.line + 1, column=mark.column + 1, key=key or None, hint=hint
    )


def find(node: Node, loc: Sequence[str | int]) -> Node:
    """The deepest node along ``loc`` (a mapping key's own node for the last key)."""
    for part in loc:
        if isinstance(node, MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if isinstance(k, ScalarNode) and k.value == part:
                    node = v
                    break
            else:
                return node
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def entry_lines(root: Node | None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    if not isinstance(root, MappingNode):
        return out
    for k, v in root.value:
        if isinstance(k, ScalarNode) and k.value in LINE_SECTIONS and isinstance(v, SequenceNode):
            out[k.value] = [n.start_mark.line + 1 for n in v.value]
    return out


#: the tag of an empty document (an empty file)
NULL = _TAG + "null"


def null_node() -> Node:
    """The node of an empty file (it has no entries, so no error is placed in it)."""
    return ScalarNode(NULL, "")
