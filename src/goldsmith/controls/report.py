"""What the ``controls`` and ``apply`` commands show, as plain data the CLI only prints.

``apply_profile`` applies (or, with ``check``, only plans) a profile's controls on a rootfs
directory; ``control_rows`` and ``control_detail`` describe the catalogue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldsmith.controls.catalogue import Benchmark, Catalogue, coverage, load_catalogue
from goldsmith.controls.engine import (
    PlannedControl,
    apply_all,
    check_all,
    plan_all,
    resolve,
    unexcepted_failures,
)
from goldsmith.errors import GoldsmithError
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.model.records import Change, Finding

__all__ = ["ApplyReport", "apply_profile", "control_detail", "control_rows", "coverage_summary"]


@dataclass(frozen=True)
class ApplyReport:
    check_mode: bool
    #: check mode: what would change, per control; apply mode: what did change
    planned: list[PlannedControl]
    changes: list[Change]
    #: apply mode: every control's check after the apply
    findings: list[Finding]
    unexcepted: list[Finding]
    seconds: float

    @property
    def would_change(self) -> bool:
        return bool(self.planned)


def apply_profile(
    loaded: LoadedProfile, rootfs: Path, *, check: bool = False, diff: bool = False
) -> ApplyReport:
    """Apply the profile's controls to ``rootfs`` (all or nothing), then check them all.

    With ``check``, only plan: nothing in the rootfs changes. With ``diff`` in apply mode, the
    plan is made first so the report carries the diffs of the files written. Every control
    id and param is validated before anything is read or written.
    """
    from goldsmith.build.packages import host_resolver
    from goldsmith.targets.rootfs import RootfsTarget

    if not rootfs.is_dir():
        raise GoldsmithError(f"{rootfs}: not a directory", hint="give the root of an image tree")
    resolved = resolve(loaded.profile, load_catalogue(), loaded=loaded)
    target = RootfsTarget(
        rootfs, env={"SOURCE_DATE_EPOCH": str(loaded.profile.base.source_date_epoch)}
    )
    start = time.monotonic()
    if check:
        planned = plan_all(target, resolved)
        changes = [c for p in planned for c in p.changes]
        return ApplyReport(True, planned, changes, [], [], time.monotonic() - start)
    diffs = {p.control: p.diffs for p in plan_all(target, resolved)} if diff else {}
    with target.session(), host_resolver(target):
        result = apply_all(target, resolved)
        findings = check_all(target, resolved)
    planned = [
        PlannedControl(cid, ch, diffs.get(cid, [])) for cid, ch in result.per_control.items() if ch
    ]
    return ApplyReport(
        False,
        planned,
        result.changes,
        findings,
        unexcepted_failures(loaded.profile, findings),
        time.monotonic() - start,
    )


def control_rows(
    benchmark: Benchmark | None = None, catalogue: Catalogue | None = None
) -> list[dict[str, Any]]:
    """One row per control; with a benchmark, only controls referencing it, in its order."""
    cat = catalogue or load_catalogue()
    rows = [
        {
            "id": c.id,
            "level": c.level,
            "rule": c.rule_type,
            "title": c.title,
            "cis-debian13": list(c.references.get("cis-debian13", ())),
            "cis-debian12": list(c.references.get("cis-debian12", ())),
        }
        for c in cat.controls.values()
    ]
    if benchmark is None:
        return rows
    rows = [r for r in rows if r[benchmark]]
    return sorted(rows, key=lambda r: [_cis_key(i) for i in r[benchmark]])


def _cis_key(cis_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in cis_id.split("."))


def coverage_summary(benchmark: Benchmark, catalogue: Catalogue | None = None) -> dict[str, Any]:
    from goldsmith.controls.catalogue import NotAutomatedKind

    cov = coverage(catalogue or load_catalogue(), benchmark)
    return {
        "benchmark": benchmark,
        "recommendations": cov.total,
        "automated": len(cov.automated),
        "manual": cov.count(NotAutomatedKind.MANUAL),
        "not_applicable": cov.count(NotAutomatedKind.NOT_APPLICABLE),
        "missing": list(cov.missing),
        "percent_automated": round(cov.percent_automated, 1),
    }


def control_detail(control_id: str, catalogue: Catalogue | None = None) -> dict[str, Any]:
    """Everything the catalogue says about one control; ProfileError with close matches."""
    cat = catalogue or load_catalogue()
    c = cat.get(control_id)
    return {
        "id": c.id,
        "title": c.title,
        "level": c.level,
        "rule": c.rule_type,
        "params": dict(c.params),
        "references": {k: list(v) for k, v in c.references.items()},
        "rationale": c.rationale,
        "defined_at": cat.origins.get(c.id),
    }
