"""Jinja2 templates shipped as package data under ``controls/templates/``."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

from goldsmith.errors import ProfileError


@cache
def _env() -> jinja2.Environment:
    # Configuration files, not HTML: escaping would corrupt them.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("goldsmith.controls", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701
    )


def render(name: str, context: Mapping[str, Any]) -> str:
    try:
        return _env().get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise ProfileError(
            f"no template {name!r}", hint="templates live in goldsmith/controls/templates/"
        ) from None
    except jinja2.UndefinedError as e:
        raise ProfileError(f"template {name!r}: {e.message}") from None


def render_string(source: str, context: Mapping[str, Any]) -> str:
    try:
        return _env().from_string(source).render(**context)
    except jinja2.UndefinedError as e:
        raise ProfileError(f"inline template: {e.message}") from None
