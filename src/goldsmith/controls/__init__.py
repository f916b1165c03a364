"""Rule primitives (check / plan / apply) and the catalogue metadata they run under.

The names below load on first use (PEP 562), so importing a light submodule of this package
(``goldsmith.controls.selection``) does not import every rule module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from goldsmith.controls.base import Control, Rule
    from goldsmith.controls.registry import RULE_TYPES, build_rule

__all__ = ["RULE_TYPES", "Control", "Rule", "build_rule"]


def __getattr__(name: str) -> Any:
    if name in ("Control", "Rule"):
        from goldsmith.controls import base

        return getattr(base, name)
    if name in ("RULE_TYPES", "build_rule"):
        from goldsmith.controls import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
