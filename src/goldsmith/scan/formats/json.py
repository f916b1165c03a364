"""``scan.json``: the canonical, schema-versioned scan document (pydantic, ``extra="forbid"``).

``goldsmith gate`` reads it back with :meth:`ScanDocument.model_validate_json`, so the fields
the gates need (summary, Lynis index, OpenSCAP counts) are part of the schema, not guessed.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from goldsmith import __version__
from goldsmith.model.profile import ExceptionEntry
from goldsmith.model.records import Source, Status
from goldsmith.scan.exceptions import ExceptionState
from goldsmith.scan.formats.interface import ScanFormat
from goldsmith.scan.merge import ScanItem, ScanReport
from goldsmith.scan.xccdf import RuleStatus

SCHEMA_VERSION = 1


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvidenceDoc(_Doc):
    expected: str
    observed: str
    how: str


class ExceptionDoc(_Doc):
    control: str
    justification: str
    compensating_controls: list[str]
    owner: str
    approved_by: str
    expires: dt.date


class FindingDoc(_Doc):
    control: str
    source: Source
    status: Status
    #: the status before exceptions (``fail`` for an excepted finding)
    original_status: Status
    cis_debian13: list[str]
    references: list[str]
    evidence: EvidenceDoc
    exception: ExceptionDoc | None = None


class ExceptionReportDoc(ExceptionDoc):
    state: ExceptionState
    matched: list[str]


class SideDoc(_Doc):
    control: str
    status: Status


class DisagreementDoc(_Doc):
    cis_debian13: str
    goldsmith: Literal["pass", "fail"]
    openscap: Literal["pass", "fail"]
    goldsmith_findings: list[SideDoc]
    openscap_findings: list[SideDoc]


class Summary(_Doc):
    passed: int
    failed: int
    excepted: int
    not_applicable: int
    errors: int
    #: failed + errors + expired exceptions: what the ``max_failures_not_excepted`` gate counts
    failures_not_excepted: int
    stale_exceptions: int
    #: exceptions for a scanner that did not run in this scan (see scan.exceptions); added
    #: within schema version 1, so documents written before it read as 0
    unchecked_exceptions: int = 0
    expired_exceptions: int
    disagreements: int


class SectionDoc(_Doc):
    section: str
    title: str
    passed: int
    failed: int
    excepted: int
    not_applicable: int
    errors: int


class ScannerDoc(_Doc):
    source: Source
    ran: bool
    reason: str | None = None
    seconds: float | None = None


class LynisDoc(_Doc):
    version: str
    #: "chroot" (an offline rootfs: a labelled fallback) or "host" (a running system)
    mode: str
    hardening_index: Annotated[int, Field(ge=0, le=100)]
    tests_performed: int
    warnings: list[str]
    suggestions: list[str]


class OpenscapDoc(_Doc):
    benchmark: str
    benchmark_version: str
    profile: str
    counts: dict[RuleStatus, int]
    #: pass / (pass + fail + error) in percent, over the rules the profile selected
    pass_rate: float | None
    linux_base_installed: bool | None = None


class TargetDoc(_Doc):
    kind: Literal["rootfs", "host"]
    path: str


class ProfileDoc(_Doc):
    name: str
    version: str
    digest: str


class ScanDocument(_Doc):
    schema_version: Literal[1] = 1
    id: uuid.UUID
    created: dt.datetime
    today: dt.date
    goldsmith_version: str
    target: TargetDoc
    profile: ProfileDoc
    compliant: bool
    summary: Summary
    sections: list[SectionDoc]
    scanners: list[ScannerDoc]
    lynis: LynisDoc | None = None
    openscap: OpenscapDoc | None = None
    disagreements: list[DisagreementDoc]
    exceptions: list[ExceptionReportDoc]
    findings: list[FindingDoc]


def document(report: ScanReport, *, version: str = __version__) -> ScanDocument:
    c = report.counts()
    states = [r.state for r in report.exceptions]
    return ScanDocument(
        id=report.id,
        created=report.created,
        today=report.today,
        goldsmith_version=version,
        target=TargetDoc(
            kind="host" if report.target_kind == "host" else "rootfs", path=report.target
        ),
        profile=ProfileDoc(
            name=report.profile_name,
            version=report.profile_version,
            digest=report.profile_digest,
        ),
        compliant=report.compliant,
        summary=Summary(
            passed=c[Status.PASS],
            failed=c[Status.FAIL],
            excepted=c[Status.EXCEPTED],
            not_applicable=c[Status.NOT_APPLICABLE],
            errors=c[Status.ERROR],
            failures_not_excepted=report.failures_not_excepted,
            stale_exceptions=states.count(ExceptionState.STALE),
            unchecked_exceptions=states.count(ExceptionState.UNCHECKED),
            expired_exceptions=states.count(ExceptionState.EXPIRED),
            disagreements=len(report.disagreements),
        ),
        sections=[
            SectionDoc(
                section=s.section,
                title=s.title,
                passed=s.counts[Status.PASS],
                failed=s.counts[Status.FAIL],
                excepted=s.counts[Status.EXCEPTED],
                not_applicable=s.counts[Status.NOT_APPLICABLE],
                errors=s.counts[Status.ERROR],
            )
            for s in report.sections()
        ],
        scanners=[
            ScannerDoc(source=s.source, ran=s.ran, reason=s.reason, seconds=s.seconds)
            for s in report.scanners
        ],
        lynis=None
        if report.lynis is None
        else LynisDoc(
            version=report.lynis.lynis_version,
            mode=report.lynis.mode,
            hardening_index=report.lynis.hardening_index,
            tests_performed=report.lynis.tests_performed,
            warnings=[f"{w.test_id}: {w.message}" for w in report.lynis.warnings],
            suggestions=[f"{s.test_id}: {s.message}" for s in report.lynis.suggestions],
        ),
        openscap=None
        if report.openscap is None
        else OpenscapDoc(
            benchmark=report.openscap.benchmark_id,
            benchmark_version=report.openscap.benchmark_version,
            profile=report.openscap.profile_id,
            counts={k: v for k, v in report.openscap.counts.items() if v},
            pass_rate=None
            if report.openscap.pass_rate is None
            else round(report.openscap.pass_rate * 100, 2),
            linux_base_installed=report.openscap.linux_base_installed,
        ),
        disagreements=[
            DisagreementDoc(
                cis_debian13=d.cis,
                goldsmith="pass" if d.goldsmith == "pass" else "fail",
                openscap="pass" if d.openscap == "pass" else "fail",
                goldsmith_findings=[
                    SideDoc(control=s.control, status=s.status) for s in d.goldsmith_findings
                ],
                openscap_findings=[
                    SideDoc(control=s.control, status=s.status) for s in d.openscap_findings
                ],
            )
            for d in report.disagreements
        ],
        exceptions=[
            ExceptionReportDoc(
                **_exception(r.exception).model_dump(), state=r.state, matched=list(r.matched)
            )
            for r in report.exceptions
        ],
        findings=[_finding(i) for i in report.items],
    )


def _exception(e: ExceptionEntry) -> ExceptionDoc:
    return ExceptionDoc(
        control=e.control,
        justification=e.justification,
        compensating_controls=list(e.compensating_controls),
        owner=e.owner,
        approved_by=e.approved_by,
        expires=e.expires,
    )


def _finding(item: ScanItem) -> FindingDoc:
    f = item.finding
    return FindingDoc(
        control=f.control,
        source=f.source,
        status=f.status,
        original_status=item.original,
        cis_debian13=list(item.cis),
        references=list(f.references),
        evidence=EvidenceDoc(
            expected=f.evidence.expected, observed=f.evidence.observed, how=f.evidence.how
        ),
        exception=None if item.exception is None else _exception(item.exception),
    )


class JsonFormat(ScanFormat):
    filename = "scan.json"

    def __init__(self, *, version: str = __version__) -> None:
        self.version = version

    def render(self, report: ScanReport) -> str:
        data = document(report, version=self.version).model_dump(mode="json")
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
