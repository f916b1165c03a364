"""Rule primitives (check / plan / apply) and the catalogue metadata they run under."""

from goldsmith.controls.base import Control, Rule
from goldsmith.controls.registry import RULE_TYPES, build_rule

__all__ = ["RULE_TYPES", "Control", "Rule", "build_rule"]
