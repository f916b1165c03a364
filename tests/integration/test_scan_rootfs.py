"""goldsmith scan with all three scanners on the real hardened default rootfs.

Unpacks the session build's rootfs.tar.zst (as root, owners and modes kept), scans it with
goldsmith's controls, Lynis (chroot) and OpenSCAP (CIS Level 2 Server), and checks that the
scan left the tree exactly as it was, that each scanner produced its result, and that the
documents the gate reads are complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from defusedxml.ElementTree import parse as parse_xml

from goldsmith.controls.catalogue import load_catalogue
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.model.records import Source, Status
from goldsmith.pipeline.gates import evaluate_gates, read_results
from goldsmith.scan.merge import ScanReport

pytestmark = pytest.mark.integration


def test_the_scan_leaves_the_rootfs_unchanged(scanned: tuple[ScanReport, str, str, Path]) -> None:
    _, before, after, _ = scanned
    assert before == after


def test_all_three_scanners_ran(scanned: tuple[ScanReport, str, str, Path]) -> None:
    report, _, _, out = scanned
    assert [(s.source, s.ran) for s in report.scanners] == [
        (Source.GOLDSMITH, True),
        (Source.LYNIS, True),
        (Source.OPENSCAP, True),
    ], report.scanners
    assert report.lynis is not None and report.lynis.mode == "chroot"
    assert 0 < report.lynis.hardening_index <= 100
    assert report.openscap is not None and report.openscap.linux_base_installed is True
    assert report.openscap.pass_rate is not None and report.openscap.pass_rate > 0.5
    assert (out / "openscap" / "oscap-arf.xml").is_file()
    assert (out / "lynis" / "lynis-report.dat").is_file()


def test_the_hardened_image_passes_its_own_controls(
    scanned: tuple[ScanReport, str, str, Path],
) -> None:
    report, _, _, _ = scanned
    own = [i.finding for i in report.items if i.finding.source is Source.GOLDSMITH]
    assert len(own) == len(load_catalogue().controls)
    bad = [
        (f.control, f.status, f.evidence.observed)
        for f in own
        if f.status in (Status.FAIL, Status.ERROR)
    ]
    assert bad == []


def test_openscap_findings_carry_cis_ids_and_are_compared(
    scanned: tuple[ScanReport, str, str, Path],
) -> None:
    report, _, _, _ = scanned
    oscap = [i for i in report.items if i.finding.source is Source.OPENSCAP]
    assert sum(1 for i in oscap if i.cis) > 0.9 * len(oscap)
    for d in report.disagreements:  # each one really is a pass against a fail
        assert {d.goldsmith, d.openscap} == {"pass", "fail"}


def test_the_documents_are_complete_and_the_gates_evaluate(
    scanned: tuple[ScanReport, str, str, Path], default_profile: LoadedProfile
) -> None:
    report, _, _, out = scanned
    doc = json.loads((out / "scan.json").read_text())
    assert doc["summary"]["failures_not_excepted"] == report.failures_not_excepted
    assert len(doc["findings"]) == len(report.items)
    junit = parse_xml(out / "scan.junit.xml").getroot()
    assert int(junit.get("tests")) >= len(report.items)
    sarif = json.loads((out / "scan.sarif").read_text())
    assert sarif["version"] == "2.1.0" and len(sarif["runs"]) == 3
    gates = {g.name: g for g in evaluate_gates(default_profile.profile.gates, read_results(out))}
    # every gate that has its evidence here states what it saw; boot-test needs boottest.json
    assert (
        str(report.lynis.hardening_index if report.lynis else "")
        in gates["lynis-hardening-index"].observed
    )
    assert not gates["boot-test"].passed and gates["boot-test"].explanation
