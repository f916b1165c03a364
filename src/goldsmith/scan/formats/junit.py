"""``scan.junit.xml``: one test suite per scanner, one test case per finding.

A failing finding is a ``<failure>``, an erroring one an ``<error>``; excepted and
not-applicable findings are ``<skipped>`` with the reason (the exception's justification), so a
CI system shows them as neither passed nor failed. Expired exceptions are failing test cases of
their own (suite ``exceptions``): they count against the gate.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement, indent, tostring

from goldsmith.model.records import Source, Status
from goldsmith.scan.exceptions import ExceptionState
from goldsmith.scan.formats.interface import ScanFormat
from goldsmith.scan.merge import ScanItem, ScanReport


class JunitFormat(ScanFormat):
    filename = "scan.junit.xml"

    def render(self, report: ScanReport) -> str:
        stamp = report.created.isoformat(timespec="seconds")
        root = Element("testsuites", {"name": f"goldsmith scan {report.id}"})
        totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for source in Source:
            items = [i for i in report.items if i.finding.source is source]
            ran = any(s.source is source and s.ran for s in report.scanners)
            if not items and not (ran or source is Source.GOLDSMITH):
                continue
            suite = SubElement(root, "testsuite", {"name": source.value, "timestamp": stamp})
            counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
            for item in items:
                _case(suite, item, counts)
            _attrs(suite, counts, totals)
        expired = [r for r in report.exceptions if r.state is ExceptionState.EXPIRED]
        if expired:
            suite = SubElement(root, "testsuite", {"name": "exceptions", "timestamp": stamp})
            counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
            for r in expired:
                case = SubElement(
                    suite, "testcase", {"classname": "exceptions", "name": r.exception.control}
                )
                counts["tests"] += 1
                counts["failures"] += 1
                fail = SubElement(
                    case,
                    "failure",
                    {"type": "expired", "message": f"exception expired on {r.exception.expires}"},
                )
                fail.text = f"owner: {r.exception.owner}; approved by: {r.exception.approved_by}"
            _attrs(suite, counts, totals)
        for k, v in totals.items():
            root.set(k, str(v))
        indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + tostring(root, "unicode") + "\n"


def _attrs(suite: Element, counts: dict[str, int], totals: dict[str, int]) -> None:
    for k, v in counts.items():
        suite.set(k, str(v))
        totals[k] += v


def _case(suite: Element, item: ScanItem, counts: dict[str, int]) -> None:
    f = item.finding
    section = item.sections[0]
    case = SubElement(
        suite,
        "testcase",
        {"classname": f"{f.source.value}.cis-{section}", "name": f.control},
    )
    counts["tests"] += 1
    detail = (
        f"expected: {f.evidence.expected}\nobserved: {f.evidence.observed}\nhow: {f.evidence.how}"
    )
    if item.cis:
        detail += "\ncis-debian13: " + ", ".join(item.cis)
    if f.status is Status.FAIL:
        counts["failures"] += 1
        el = SubElement(case, "failure", {"type": "fail", "message": f.evidence.observed})
        el.text = detail
    elif f.status is Status.ERROR:
        counts["errors"] += 1
        el = SubElement(case, "error", {"type": "error", "message": f.evidence.observed})
        el.text = detail
    elif f.status is Status.EXCEPTED:
        counts["skipped"] += 1
        why = item.exception.justification if item.exception is not None else ""
        el = SubElement(case, "skipped", {"message": f"excepted: {why}"})
        el.text = detail
    elif f.status is Status.NOT_APPLICABLE:
        counts["skipped"] += 1
        SubElement(case, "skipped", {"message": f"not applicable: {f.evidence.observed}"})
