"""Lynis report parser, findings and mapping table, on real Lynis 3.1.4 output.

The asset is the report of `run_lynis_chroot` on a stock trixie minbase rootfs
(`mmdebstrap --variant=minbase --include=linux-base,openssh-server,auditd,sudo trixie`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from goldsmith.model.records import Source, Status
from goldsmith.scan import ScanError
from goldsmith.scan.lynis import (
    LynisItem,
    _parse_mapping,
    lynis_mapping,
    parse_report,
    to_findings,
)

ASSETS = Path(__file__).parent.parent / "assets" / "lynis"
REPORT = ASSETS / "trixie-minbase-chroot.lynis-report.dat"
CATALOGUE = Path(__file__).parents[2] / "src" / "goldsmith" / "controls" / "catalogue"


@pytest.fixture(scope="module")
def real() -> str:
    return REPORT.read_text()


def test_real_report_numbers(real: str) -> None:
    r = parse_report(real)
    assert r.lynis_version == "3.1.4"
    assert r.hardening_index == 57
    assert r.os_fullname == "Debian GNU/Linux 13 (trixie)"
    assert r.tests_performed == 233
    assert len(r.tests_executed) == 233
    assert "SSH-7402" in r.tests_executed
    # sshd does not run in a chroot, so Lynis skips its option checks there
    assert "SSH-7408" in r.tests_skipped
    assert "SSH-7408" not in r.tests_executed
    assert r.mode == "report"


def test_real_report_warnings_and_suggestions(real: str) -> None:
    r = parse_report(real)
    assert [w.test_id for w in r.warnings] == ["PKGS-7388", "LOGG-2138"]
    assert r.warnings[0].message.startswith("Can't find any security repository")
    assert r.warnings[0].details is None and r.warnings[0].solution is None
    assert len(r.suggestions) == 40
    boot = next(s for s in r.suggestions if s.test_id == "BOOT-5264")
    assert boot.message == "Consider hardening system services"
    assert boot.details == "Run '/usr/bin/systemd-analyze security SERVICE' for each service"
    assert boot.solution is None
    assert any(e.test_id == "NETW-3012:1" for e in r.exceptions)


def test_raw_values_and_lists_kept(real: str) -> None:
    r = parse_report(real)
    assert r.values["lynis_version"] == "3.1.4"
    assert len(r.lists["suggestion"]) == 40
    assert any(d.startswith("KRNL-6000|sysctl|") for d in r.lists["details"])


def test_item_fields_parsed_from_the_right() -> None:
    text = (
        "lynis_version=3.1.4\nhardening_index=70\n"
        "warning[]=SSH-7408|a message | with a pipe|the details|the fix|\n"
        "suggestion[]=AUTH-9328|Default umask could be stricter|-|-|\n"
        "suggestion[]=AUTH-9328|Default umask could be stricter|-|-|\n"
    )
    r = parse_report(text)
    assert r.warnings == (
        LynisItem("SSH-7408", "a message | with a pipe", "the details", "the fix"),
    )
    # duplicates (Lynis repeats some lines) are kept once
    assert r.suggestions == (LynisItem("AUTH-9328", "Default umask could be stricter"),)
    assert r.tests_performed == 0


@pytest.mark.parametrize("missing", ["lynis_version", "hardening_index"])
def test_incomplete_report_is_an_error(real: str, missing: str) -> None:
    text = "\n".join(ln for ln in real.splitlines() if not ln.startswith(missing + "="))
    with pytest.raises(ScanError, match=missing):
        parse_report(text)


def test_non_numeric_index_is_an_error() -> None:
    with pytest.raises(ScanError, match="not a number"):
        parse_report("lynis_version=3.1.4\nhardening_index=high\n")


def test_findings_from_warnings_only(real: str) -> None:
    r = parse_report(real)
    findings = to_findings(r)
    assert [f.control for f in findings] == ["lynis:PKGS-7388", "lynis:LOGG-2138"]
    assert all(f.source is Source.LYNIS for f in findings)
    # parsed from a file: no idea where it ran, so a warning is a failure
    assert all(f.status is Status.FAIL for f in findings)
    assert "Can't find any security repository" in findings[0].evidence.observed


def test_live_tests_not_applicable_in_chroot(real: str) -> None:
    r = dataclasses.replace(parse_report(real), mode="chroot")
    by_id = {f.control: f for f in to_findings(r)}
    # LOGG-2138 looks for a running klogd: nothing runs in a chroot
    assert by_id["lynis:LOGG-2138"].status is Status.NOT_APPLICABLE
    assert "chroot" in by_id["lynis:LOGG-2138"].evidence.how
    assert by_id["lynis:PKGS-7388"].status is Status.FAIL  # reads files: holds in a chroot
    host = dataclasses.replace(r, mode="host")
    assert {f.status for f in to_findings(host)} == {Status.FAIL}


def test_mapped_warning_carries_references() -> None:
    r = parse_report(
        "lynis_version=3.1.4\nhardening_index=60\n"
        "warning[]=SSH-7408|PermitRootLogin is not set to no|-|-|\n"
    )
    (f,) = to_findings(r)
    assert "cis-debian13: 5.1.21" in f.references
    assert "goldsmith: sshd.*" in f.references


def test_mapping_is_partial_and_well_formed() -> None:
    doc = yaml.safe_load(
        (Path(__file__).parents[2] / "src/goldsmith/scan/lynis_map.yaml").read_text()
    )
    assert doc["partial"] is True
    m = lynis_mapping()
    assert m["KRNL-6000"].subsystem == "sysctl" and m["KRNL-6000"].live
    assert m["AUTH-9328"].subsystem == "umask"
    assert m["ACCT-9628"].subsystem == "auditd"
    assert not m["SSH-7408"].live


def test_mapping_cis_ids_exist_in_the_benchmark() -> None:
    ids = {
        line.split("\t", 1)[0]
        for line in (CATALOGUE / "cis-debian13-v1.0.0.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    }
    unknown = [
        (test, cis)
        for test, m in lynis_mapping().items()
        for cis in m.cis_debian13
        if cis not in ids
    ]
    assert not unknown


def test_mapping_exact_control_ids_exist_in_the_catalogue() -> None:
    known: set[str] = set()
    for f in CATALOGUE.glob("*.yaml"):
        for c in (yaml.safe_load(f.read_text()) or {}).get("controls", []):
            known.add(c["id"])
    exact = {c for m in lynis_mapping().values() for c in m.controls if not c.endswith(".*")}
    assert exact, "the table names some controls exactly"
    assert exact <= known, sorted(exact - known)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ([], "expected a mapping"),
        ({"tests": {"X-1": {"controls": []}}}, "needs a 'subsystem'"),
        ({"tests": {"X-1": {"subsystem": "a", "cis": ["1"]}}}, "unknown keys"),
    ],
)
def test_mapping_validation(doc: object, match: str) -> None:
    with pytest.raises(ScanError, match=match):
        _parse_mapping(doc)


def test_hardened_default_image_report() -> None:
    """Lynis 3.1.4 in a chroot of the hardened default rootfs (build of 2026-11-25)."""
    r = parse_report((ASSETS / "nanoclaw-hardened-chroot.lynis-report.dat").read_text())
    stock = parse_report(REPORT.read_text())
    assert (r.hardening_index, r.tests_performed) == (75, 251)
    assert r.hardening_index > stock.hardening_index
    assert [w.test_id for w in r.warnings] == [
        "KRNL-5830",
        "PKGS-7388",
        "FIRE-4512",
        "LOGG-2138",
        "FINT-4316",
    ]
    assert len(r.suggestions) == 21
