"""The two shapes of the control engine: a ``Rule`` (a typed primitive) and a ``Control``.

A rule reads a target (``check``), says what it would change (``plan``, pure) and commits
exactly that plan (``apply``). Plans are lists of ``Step`` objects, each carrying the
``Change`` records it stands for, so ``apply`` can never do more than ``plan`` showed.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Self

from pydantic import ConfigDict

from goldsmith.controls.steps import Step
from goldsmith.errors import ProfileError
from goldsmith.model.records import Change, Evidence, Finding, Status
from goldsmith.targets.base import Target

#: reference keys a catalogue entry may carry, in display order
REFERENCE_KEYS = ("cis-debian13", "cis-debian12", "soc2", "iso27001-2013", "iso27001-2022")


@dataclass(frozen=True)
class Rule(ABC):
    """A primitive. Subclasses are frozen dataclasses whose fields are the typed params."""

    #: the name catalogue data uses (``rule: {type: sysctl, ...}``)
    type_name: ClassVar[str]
    #: params are validated by the registry: unknown keys refused, YAML numbers taken as text
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(
        extra="forbid", coerce_numbers_to_str=True
    )

    #: a check that must run in the scanning process itself, never in the forked helper of
    #: :func:`goldsmith.controls.engine.check_all` (tree scans take the walk prefetched for it)
    check_in_main_process: ClassVar[bool] = False

    #: the control this rule runs for; stamped on every Change and Finding
    control: str = field(default="", kw_only=True)

    @abstractmethod
    def check(self, t: Target) -> Finding:
        """Read the target and say pass / fail / not_applicable, with evidence. No writes."""

    @abstractmethod
    def steps(self, t: Target) -> list[Step]:
        """What must change for the rule to hold; [] when it already holds. No writes."""

    def plan(self, t: Target) -> list[Change]:
        return [c for s in self.steps(t) for c in s.changes]

    def apply(self, t: Target) -> list[Change]:
        steps = self.steps(t)
        for s in steps:
            s.commit(t)
        return [c for s in steps for c in s.changes]

    # helpers for subclasses ------------------------------------------------------------------
    def with_control(self, control: str) -> Self:
        return dataclasses.replace(self, control=control)

    def finding(self, status: Status, expected: str, observed: str, how: str) -> Finding:
        return Finding(
            control=self.control,
            status=status,
            evidence=Evidence(expected=expected, observed=observed, how=how),
        )

    def change(self, obj: str, attribute: str, before: str | None, after: str | None) -> Change:
        return Change(self.control, obj, attribute, before, after)


@dataclass(frozen=True)
class Control:
    """Catalogue metadata plus the rule spec (type and default params) it runs."""

    id: str
    title: str
    rationale: str
    level: int
    rule_type: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    references: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: the rule built from ``params`` alone, if the catalogue loader already built it (rules
    #: are frozen, so a profile that does not override the params gets this very object)
    default_rule: Rule | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.references) - set(REFERENCE_KEYS))
        if unknown:
            raise ProfileError(
                f"unknown reference kind {unknown[0]!r}",
                key=f"controls.{self.id}.references.{unknown[0]}",
                hint="known kinds: " + ", ".join(REFERENCE_KEYS),
            )
        if self.level not in (1, 2):
            raise ProfileError("level must be 1 or 2", key=f"controls.{self.id}.level")

    def rule(self, overrides: Mapping[str, Any] | None = None) -> Rule:
        """Build the rule from the default params, with profile overrides on top."""
        from goldsmith.controls.registry import build_rule  # registry imports the rules

        if not overrides and self.default_rule is not None:
            return self.default_rule
        spec: dict[str, Any] = {"type": self.rule_type, **self.params, **(overrides or {})}
        return build_rule(spec, control=self.id, key=f"controls.{self.id}.params")

    def reference_strings(self) -> tuple[str, ...]:
        return tuple(
            f"{kind}: {ref}" for kind in REFERENCE_KEYS for ref in self.references.get(kind, ())
        )

    def check(self, t: Target, overrides: Mapping[str, Any] | None = None) -> Finding:
        found = self.rule(overrides).check(t)
        return dataclasses.replace(found, references=self.reference_strings())

    def plan(self, t: Target, overrides: Mapping[str, Any] | None = None) -> list[Change]:
        return self.rule(overrides).plan(t)

    def apply(self, t: Target, overrides: Mapping[str, Any] | None = None) -> list[Change]:
        return self.rule(overrides).apply(t)
