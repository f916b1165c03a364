"""One result model: goldsmith, Lynis and OpenSCAP findings side by side, keyed by CIS id.

Every finding carries references as ``"<kind>: <id>"`` strings; the CIS Debian 13 ids
(``cis-debian13: 5.1.20``) come from the catalogue for goldsmith controls, from the rule
references of the ComplianceAsCode content for OpenSCAP, and from ``lynis_map.yaml`` for Lynis.

A *disagreement* is a CIS recommendation that goldsmith and OpenSCAP both evaluated with
opposite verdicts. Each side's verdict over its findings for that id is ``fail`` if any of them
failed (or errored), ``pass`` if all that applied passed; not-applicable findings do not vote.
Verdicts are taken before exceptions: a waiver does not change what a scanner saw.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from goldsmith.model.profile import ExceptionEntry
from goldsmith.model.records import Finding, Source, Status
from goldsmith.scan.exceptions import Excepted, ExceptionReport, ExceptionState

if TYPE_CHECKING:  # the adapters load only when a scan runs them
    from goldsmith.scan.lynis import LynisResult
    from goldsmith.scan.openscap import OscapResult

__all__ = [
    "CIS_KEY",
    "CIS_SECTIONS",
    "Disagreement",
    "ScanItem",
    "ScanReport",
    "ScannerRun",
    "SectionCounts",
    "cis_ids",
    "disagreements",
    "merge",
]

CIS_KEY = "cis-debian13"
#: top-level sections of the CIS Debian Linux 13 Benchmark v1.0.0
CIS_SECTIONS = {
    "1": "Initial Setup",
    "2": "Services",
    "3": "Network",
    "4": "Host Based Firewall",
    "5": "Access Control",
    "6": "Logging and Auditing",
    "7": "System Maintenance",
}
#: the section of a finding that names no CIS Debian 13 recommendation
NO_SECTION = "-"


def cis_ids(finding: Finding, key: str = CIS_KEY) -> tuple[str, ...]:
    """The CIS ids of ``key`` a finding references, in order, without duplicates."""
    prefix = f"{key}: "
    seen: dict[str, None] = {}
    for ref in finding.references:
        if ref.startswith(prefix):
            seen.setdefault(ref.removeprefix(prefix).strip(), None)
    return tuple(seen)


def section_of(cis_id: str) -> str:
    return cis_id.split(".", 1)[0]


@dataclass(frozen=True)
class ScanItem:
    finding: Finding  # status after exceptions (``excepted``), evidence as observed
    original: Status  # status before exceptions
    cis: tuple[str, ...] = ()
    exception: ExceptionEntry | None = None

    @property
    def sections(self) -> tuple[str, ...]:
        found = tuple(dict.fromkeys(section_of(c) for c in self.cis))
        return found or (NO_SECTION,)


@dataclass(frozen=True)
class Side:
    control: str
    status: Status


@dataclass(frozen=True)
class Disagreement:
    cis: str
    goldsmith: str  # verdict: "pass" or "fail"
    openscap: str
    goldsmith_findings: tuple[Side, ...]
    openscap_findings: tuple[Side, ...]


@dataclass(frozen=True)
class SectionCounts:
    section: str
    title: str
    counts: dict[Status, int]


@dataclass(frozen=True)
class ScannerRun:
    """A scanner that was asked for: its result, or why there is none."""

    source: Source
    ran: bool
    reason: str | None = None  # why it did not run
    seconds: float | None = None


@dataclass(frozen=True)
class ScanReport:
    id: uuid.UUID
    created: dt.datetime
    today: dt.date
    target_kind: str  # "rootfs" or "host"
    target: str
    profile_name: str
    profile_version: str
    profile_digest: str
    items: tuple[ScanItem, ...]
    exceptions: tuple[ExceptionReport, ...]
    disagreements: tuple[Disagreement, ...]
    scanners: tuple[ScannerRun, ...] = ()
    lynis: LynisResult | None = None
    openscap: OscapResult | None = None

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(i.finding for i in self.items)

    def counts(self, source: Source | None = None) -> dict[Status, int]:
        c = Counter(
            i.finding.status for i in self.items if source is None or i.finding.source is source
        )
        return {s: c.get(s, 0) for s in Status}

    @property
    def failures_not_excepted(self) -> int:
        """Failing or erroring findings no exception covers, plus every expired exception."""
        c = self.counts()
        expired = sum(1 for r in self.exceptions if r.state is ExceptionState.EXPIRED)
        return c[Status.FAIL] + c[Status.ERROR] + expired

    @property
    def compliant(self) -> bool:
        return self.failures_not_excepted == 0

    def sections(self) -> list[SectionCounts]:
        """Counts per CIS section (a finding citing two sections counts in both)."""
        per: dict[str, Counter[Status]] = {}
        for item in self.items:
            for sec in item.sections:
                per.setdefault(sec, Counter())[item.finding.status] += 1
        order = [*CIS_SECTIONS, NO_SECTION]
        return [
            SectionCounts(
                sec,
                CIS_SECTIONS.get(sec, "no CIS Debian 13 reference"),
                {s: per[sec].get(s, 0) for s in Status},
            )
            for sec in sorted(per, key=lambda s: (order.index(s) if s in order else 99, s))
        ]


def disagreements(findings: Sequence[Finding]) -> list[Disagreement]:
    """CIS ids that goldsmith and OpenSCAP evaluated with opposite verdicts, in id order."""
    sides: dict[str, dict[Source, list[Side]]] = {}
    for f in findings:
        if f.source not in (Source.GOLDSMITH, Source.OPENSCAP):
            continue
        for cid in cis_ids(f):
            sides.setdefault(cid, {}).setdefault(f.source, []).append(Side(f.control, f.status))
    out: list[Disagreement] = []
    for cid in sorted(sides, key=_id_order):
        g = sides[cid].get(Source.GOLDSMITH, [])
        o = sides[cid].get(Source.OPENSCAP, [])
        gv, ov = _verdict(g), _verdict(o)
        if gv is not None and ov is not None and gv != ov:
            out.append(Disagreement(cid, gv, ov, tuple(g), tuple(o)))
    return out


def _verdict(sides: Sequence[Side]) -> str | None:
    voting = [s.status for s in sides if s.status is not Status.NOT_APPLICABLE]
    if not voting:
        return None
    if any(s in (Status.FAIL, Status.ERROR, Status.EXCEPTED) for s in voting):
        return "fail"
    return "pass"


def _id_order(cid: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (1 << 30, p) for p in cid.split("."))


def merge(
    findings: Sequence[Finding],
    excepted: Excepted,
    *,
    report_id: uuid.UUID,
    created: dt.datetime,
    today: dt.date,
    target_kind: str,
    target: str,
    profile_name: str,
    profile_version: str,
    profile_digest: str,
    scanners: Sequence[ScannerRun] = (),
    lynis: LynisResult | None = None,
    openscap: OscapResult | None = None,
) -> ScanReport:
    """The report of one scan: ``findings`` as observed, ``excepted`` as
    :func:`goldsmith.scan.exceptions.apply_exceptions` returned for them."""
    if len(excepted.findings) != len(findings):
        raise ValueError("excepted findings do not belong to these findings")
    items = tuple(
        ScanItem(
            finding=after,
            original=before.status,
            cis=cis_ids(before),
            exception=excepted.applied.get(i),
        )
        for i, (before, after) in enumerate(zip(findings, excepted.findings, strict=True))
    )
    return ScanReport(
        id=report_id,
        created=created,
        today=today,
        target_kind=target_kind,
        target=target,
        profile_name=profile_name,
        profile_version=profile_version,
        profile_digest=profile_digest,
        items=items,
        exceptions=excepted.reports,
        disagreements=tuple(disagreements(findings)),
        scanners=tuple(scanners),
        lynis=lynis,
        openscap=openscap,
    )
