"""Jinja2 templates shipped as package data under ``controls/templates/``, and inline ones.

A rendering is a pure function of the template's source, its context and the code rendering
it, so it is kept in goldsmith's content cache (:mod:`goldsmith.cache`) under a key hashing
all of them: the source text, the context in a type-exact form (a tuple and a list, or a dict
and a mapping proxy, render differently and key differently), this module's source and
Jinja2's own ``__init__`` (its version). Only contexts of plain data (str, int, float, bool,
None, lists, tuples, dicts with str keys) are cached; anything else is always rendered. A
warm whole-catalogue scan therefore neither imports Jinja2 nor compiles a template. Errors
(a missing template, an undefined variable) are never cached: they happen on every run.
A named template is keyed by its own text only: no shipped template includes, extends or
imports another; one that does must add those templates' texts to its key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from goldsmith.cache import ContentCache, code_cache
from goldsmith.errors import ProfileError

if TYPE_CHECKING:
    import jinja2


@cache
def _env() -> jinja2.Environment:
    import jinja2

    # Configuration files, not HTML: escaping would corrupt them.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("goldsmith.controls", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701
    )


@cache
def _render_cache() -> ContentCache:
    return code_cache("template-render", files=[__file__], modules=["jinja2"])


def render(name: str, context: Mapping[str, Any]) -> str:
    try:
        source = (resources.files("goldsmith.controls") / "templates" / name).read_text(
            encoding="utf-8"
        )
    except (OSError, ValueError):
        source = None  # Jinja2 says what is wrong
    return _cached(f"template {name}", source, context, lambda: _render_named(name, context))


def render_string(source: str, context: Mapping[str, Any]) -> str:
    return _cached("inline", source, context, lambda: _render_inline(source, context))


def _render_named(name: str, context: Mapping[str, Any]) -> str:
    import jinja2

    try:
        return _env().get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise ProfileError(
            f"no template {name!r}", hint="templates live in goldsmith/controls/templates/"
        ) from None
    except jinja2.UndefinedError as e:
        raise ProfileError(f"template {name!r}: {e.message}") from None


def _render_inline(source: str, context: Mapping[str, Any]) -> str:
    import jinja2

    try:
        return _env().from_string(source).render(**context)
    except jinja2.UndefinedError as e:
        raise ProfileError(f"inline template: {e.message}") from None


def _cached(
    kind: str, source: str | None, context: Mapping[str, Any], render_now: Callable[[], str]
) -> str:
    canon = canonical(dict(context)) if source is not None else None
    if canon is None:
        return render_now()
    key = f"{kind}\0{source}\0{canon}"
    store = _render_cache()
    hit = store.get(key)
    if hit is not None and isinstance(hit.get("text"), str):
        text: str = hit["text"]
        return text
    out = render_now()
    store.put(key, {"text": out})
    return out


def canonical(value: Any) -> str | None:
    """A type-exact text of plain data (``None`` if ``value`` holds anything else)."""
    try:
        return json.dumps(_tagged(value), ensure_ascii=False, allow_nan=False)
    except (_NotPlain, ValueError):
        return None


class _NotPlain(Exception):
    pass


def _tagged(v: Any) -> Any:
    # exact types only: a str subclass (an enum) or an int subclass (bool aside) may render
    # differently from its value
    t = type(v)
    if v is None or t is str or t is bool:
        return v
    if t is int:
        return ["i", str(v)]
    if t is float:
        return ["f", repr(v)]
    if t is list or t is tuple:
        return ["l" if t is list else "t", [_tagged(x) for x in v]]
    if t is dict or t is MappingProxyType:
        if not all(type(k) is str for k in v):
            raise _NotPlain
        return ["d" if t is dict else "m", [[k, _tagged(x)] for k, x in v.items()]]
    raise _NotPlain
