"""Scan output formats against golden files (fixed clock and id), plus structural checks.

Regenerate the golden files after an intended change with GOLDSMITH_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring
from scan_fixtures import SCAN_ID, report

from goldsmith.scan.formats import OutputFormat, write_reports
from goldsmith.scan.formats.interface import ScanFormat
from goldsmith.scan.formats.json import JsonFormat, ScanDocument
from goldsmith.scan.formats.junit import JunitFormat
from goldsmith.scan.formats.sarif import SarifFormat

GOLDEN = Path(__file__).parent.parent / "golden"
VERSION = "0.0.0-golden"


def _formats() -> list[tuple[str, ScanFormat]]:
    return [
        ("scan.json", JsonFormat(version=VERSION)),
        ("scan.junit.xml", JunitFormat()),
        ("scan.sarif", SarifFormat(version=VERSION)),
    ]


@pytest.mark.parametrize(("name", "fmt"), _formats(), ids=lambda v: v if isinstance(v, str) else "")
def test_format_matches_its_golden_file(name: str, fmt: ScanFormat) -> None:
    text = fmt.render(report())
    golden = GOLDEN / name
    if os.environ.get("GOLDSMITH_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    assert fmt.render(report()) == text  # rendering is deterministic


def test_json_round_trips_through_the_schema() -> None:
    doc = ScanDocument.model_validate_json(JsonFormat().render(report()))
    assert doc.schema_version == 1 and doc.id == SCAN_ID
    assert doc.summary.failures_not_excepted == 6 and doc.summary.excepted == 1
    assert doc.summary.expired_exceptions == 1 and doc.summary.stale_exceptions == 1
    assert doc.lynis is not None and doc.lynis.hardening_index == 67
    assert doc.openscap is not None and doc.openscap.pass_rate == pytest.approx(33.33)
    excepted = next(f for f in doc.findings if f.status == "excepted")
    assert excepted.original_status == "fail" and excepted.exception is not None
    assert excepted.evidence.observed == "observed fail"  # the original evidence is kept
    assert [d.cis_debian13 for d in doc.disagreements] == ["5.1.21"]


def test_json_schema_refuses_unknown_keys() -> None:
    data = json.loads(JsonFormat().render(report()))
    data["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        ScanDocument.model_validate(data)


def test_junit_parses_and_counts_add_up() -> None:
    root = fromstring(JunitFormat().render(report()))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["goldsmith", "lynis", "openscap", "exceptions"]
    g = suites["goldsmith"]
    assert (g.get("tests"), g.get("failures"), g.get("errors"), g.get("skipped")) == (
        "6",
        "1",
        "1",
        "2",
    )
    skipped = g.find("testcase[@name='sysctl.ip-forward']/skipped")
    assert skipped is not None and "rootful Docker" in skipped.get("message", "")
    assert suites["exceptions"].find("testcase/failure").get("type") == "expired"
    total = sum(int(s.get("tests", "0")) for s in suites.values())
    assert root.get("tests") == str(total) == str(len(report().items) + 1)


def test_sarif_has_the_210_required_fields() -> None:
    doc = json.loads(SarifFormat().render(report()))
    assert doc["version"] == "2.1.0" and "sarif" in doc["$schema"]
    assert [r["tool"]["driver"]["name"] for r in doc["runs"]] == ["goldsmith", "Lynis", "OpenSCAP"]
    for run in doc["runs"]:
        rules = run["tool"]["driver"]["rules"]
        assert run["automationDetails"]["guid"] == str(SCAN_ID)
        for res in run["results"]:
            assert res["message"]["text"]
            assert res["kind"] in {"pass", "fail", "notApplicable"}
            assert res["level"] in {"none", "error"}
            assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    suppressed = [r for r in doc["runs"][0]["results"] if "suppressions" in r]
    assert [r["ruleId"] for r in suppressed] == ["sysctl.ip-forward"]
    assert suppressed[0]["suppressions"][0]["status"] == "accepted"


def test_every_format_is_written_by_name(tmp_path: Path) -> None:
    paths = write_reports(report(), tmp_path / "out")
    assert [p.name for p in paths] == [f.to_format().filename for f in OutputFormat]
    assert all(p.stat().st_size > 0 for p in paths)
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left
