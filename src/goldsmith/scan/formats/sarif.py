"""``scan.sarif``: SARIF 2.1.0, one run per scanner, every finding a result.

Results carry ``kind`` (``pass``, ``fail``, ``notApplicable``) and ``level`` (``error`` for a
failure, ``none`` otherwise); an excepted finding is a failure with an accepted external
suppression holding the exception's justification, which is how code-scanning tools show a
waiver. The run's ``automationDetails.guid`` is the scan id.
"""

from __future__ import annotations

import json
from typing import Any

from goldsmith import __version__
from goldsmith.model.records import Source, Status
from goldsmith.scan.formats.interface import ScanFormat
from goldsmith.scan.merge import ScanItem, ScanReport

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_DRIVERS = {
    Source.GOLDSMITH: ("goldsmith", "https://github.com/goldsmith"),
    Source.LYNIS: ("Lynis", "https://cisofy.com/lynis/"),
    Source.OPENSCAP: ("OpenSCAP", "https://www.open-scap.org/"),
}
_KIND = {
    Status.PASS: "pass",
    Status.FAIL: "fail",
    Status.ERROR: "fail",
    Status.EXCEPTED: "fail",
    Status.NOT_APPLICABLE: "notApplicable",
}


class SarifFormat(ScanFormat):
    filename = "scan.sarif"

    def __init__(self, *, version: str = __version__) -> None:
        self.version = version

    def render(self, report: ScanReport) -> str:
        runs = []
        for source in Source:
            items = [i for i in report.items if i.finding.source is source]
            ran = any(s.source is source and s.ran for s in report.scanners)
            if items or ran or source is Source.GOLDSMITH:
                runs.append(self._run(report, source, items))
        doc = {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": runs}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def _run(self, report: ScanReport, source: Source, items: list[ScanItem]) -> dict[str, Any]:
        name, uri = _DRIVERS[source]
        version = self.version
        if source is Source.LYNIS and report.lynis is not None:
            version = report.lynis.lynis_version
        if source is Source.OPENSCAP and report.openscap is not None:
            version = report.openscap.benchmark_version
        rules: list[dict[str, Any]] = []
        index: dict[str, int] = {}
        results: list[dict[str, Any]] = []
        for item in items:
            f = item.finding
            if f.control not in index:
                index[f.control] = len(rules)
                rule: dict[str, Any] = {
                    "id": f.control,
                    "shortDescription": {"text": f.evidence.expected},
                }
                if f.references:
                    rule["properties"] = {"tags": list(f.references)}
                rules.append(rule)
            results.append(_result(item, index[f.control]))
        return {
            "tool": {
                "driver": {"name": name, "version": version, "informationUri": uri, "rules": rules}
            },
            "automationDetails": {
                "id": f"goldsmith-scan/{report.profile_name}/{source.value}/",
                "guid": str(report.id),
            },
            "invocations": [
                {
                    "executionSuccessful": True,
                    "startTimeUtc": report.created.isoformat(timespec="seconds"),
                }
            ],
            "properties": {"target": report.target, "targetKind": report.target_kind},
            "results": results,
        }


def _result(item: ScanItem, rule_index: int) -> dict[str, Any]:
    f = item.finding
    failing = f.status in (Status.FAIL, Status.ERROR, Status.EXCEPTED)
    text = f"{f.control}: {f.status.value}: {f.evidence.observed}"
    out: dict[str, Any] = {
        "ruleId": f.control,
        "ruleIndex": rule_index,
        "kind": _KIND[f.status],
        "level": "error" if failing else "none",
        "message": {"text": text},
        "properties": {
            "status": f.status.value,
            "originalStatus": item.original.value,
            "expected": f.evidence.expected,
            "how": f.evidence.how,
            "cisDebian13": list(item.cis),
        },
    }
    if item.exception is not None:
        e = item.exception
        out["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": e.justification,
                "properties": {
                    "owner": e.owner,
                    "approvedBy": e.approved_by,
                    "expires": e.expires.isoformat(),
                    "compensatingControls": list(e.compensating_controls),
                },
            }
        ]
    return out
