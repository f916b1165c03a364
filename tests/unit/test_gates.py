"""Gates: each one passing and failing, with the explanation a miss carries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scan_fixtures import report

from goldsmith.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, main
from goldsmith.errors import GoldsmithError
from goldsmith.model.profile import Gates
from goldsmith.pipeline.gates import GateResult, evaluate_gates, read_results
from goldsmith.scan.formats import write_reports

LENIENT = Gates(
    lynis_min_hardening_index=60,
    max_failures_not_excepted=6,
    openscap_min_pass_rate=30.0,
    boot_test=True,
)


def results(tmp_path: Path, *, scan: bool = True, boot: dict[str, object] | None = None) -> Path:
    d = tmp_path / "results"
    d.mkdir(exist_ok=True)
    if scan:
        write_reports(report(), d)  # Lynis 67, 6 failures not excepted, OpenSCAP 33.33 %
    if boot is not None:
        (d / "boottest.json").write_text(json.dumps(boot))
    return d


def by_name(gates: Gates, d: Path) -> dict[str, GateResult]:
    return {g.name: g for g in evaluate_gates(gates, read_results(d))}


def test_every_gate_passes_within_its_threshold(tmp_path: Path) -> None:
    got = by_name(LENIENT, results(tmp_path, boot={"passed": True}))
    assert all(g.passed and g.explanation is None for g in got.values()), got
    assert "67 from the chroot scan" in got["lynis-hardening-index"].observed
    assert got["openscap-cis-l2-pass-rate"].observed.startswith("33.33 % (1 of 3")


def test_a_scan_json_written_before_unchecked_exceptions_still_reads(tmp_path: Path) -> None:
    # schema version 1 gained summary.unchecked_exceptions; results of older builds (without
    # it) are still evaluated, as the gate of a build made last week must be
    d = results(tmp_path, boot={"passed": True})
    doc = json.loads((d / "scan.json").read_text())
    del doc["summary"]["unchecked_exceptions"]
    (d / "scan.json").write_text(json.dumps(doc))
    got = by_name(LENIENT, d)
    assert all(g.passed for g in got.values()), got


def test_the_default_gates_miss_and_say_why(tmp_path: Path) -> None:
    boot = {"passed": False, "error": None, "summary": {"failed": ["sysctl", "sockets"]}}
    got = by_name(Gates(), results(tmp_path, boot=boot))
    assert not any(g.passed for g in got.values())
    assert "23 below 90" in (got["lynis-hardening-index"].explanation or "")
    fail = got["failures-not-excepted"].explanation or ""
    assert "6 over the limit" in fail and "grub.password" in fail
    assert "expired exceptions (renew or remove): openscap:grub2_password" in fail
    assert "61.67 points below 95 %" in (got["openscap-cis-l2-pass-rate"].explanation or "")
    assert "failed checks: sysctl, sockets" in (got["boot-test"].explanation or "")


def test_the_booted_lynis_index_is_preferred_over_the_chroot_one(tmp_path: Path) -> None:
    boot = {"passed": True, "scanners": {"lynis": {"status": "ran", "hardening_index": 91}}}
    got = by_name(Gates(), results(tmp_path, boot=boot))
    assert got["lynis-hardening-index"].passed
    assert "91 from the booted image" in got["lynis-hardening-index"].observed


def test_the_booted_openscap_rate_is_preferred_over_the_offline_one(tmp_path: Path) -> None:
    guest = {
        "status": "ran",
        "profile": "xccdf_org.ssgproject.content_profile_cis_level2_server",
        "pass_rate": 95.5,
        "counts": {"pass": 470, "fail": 22, "error": 0},
    }
    got = by_name(
        Gates(), results(tmp_path, boot={"passed": True, "scanners": {"openscap": guest}})
    )
    gate = got["openscap-cis-l2-pass-rate"]
    assert gate.passed and "95.50 % (470 of 492" in gate.observed
    assert "booted image" in gate.observed
    low = {**guest, "pass_rate": 90.0}
    missed = by_name(
        Gates(), results(tmp_path, boot={"passed": True, "scanners": {"openscap": low}})
    )["openscap-cis-l2-pass-rate"]
    assert not missed.passed and "5.00 points below 95 %" in (missed.explanation or "")
    # a guest run that did not happen leaves the offline (oscap-chroot) rate, labelled
    off = {"status": "not_run", "reason": "turned off"}
    fallback = by_name(
        Gates(), results(tmp_path, boot={"passed": True, "scanners": {"openscap": off}})
    )["openscap-cis-l2-pass-rate"]
    assert "oscap-chroot on the rootfs" in fallback.observed


def test_failures_the_booted_image_shows_count_for_the_failures_gate(tmp_path: Path) -> None:
    lenient = LENIENT.model_copy(update={"max_failures_not_excepted": 6})  # the rootfs has 6
    clean = {"status": "ran", "artifact": "/o/boottest/guest-scan.json"}
    ok = {**clean, "summary": {"failures_not_excepted": 0, "failed": 0}}
    got = by_name(lenient, results(tmp_path, boot={"passed": True, "scanners": {"goldsmith": ok}}))
    gate = got["failures-not-excepted"]
    assert gate.passed and "booted image: 0 (boottest.json)" in gate.observed
    bad = {**clean, "summary": {"failures_not_excepted": 7, "failed": 7}}
    got = by_name(lenient, results(tmp_path, boot={"passed": True, "scanners": {"goldsmith": bad}}))
    gate = got["failures-not-excepted"]
    assert not gate.passed
    assert "booted image's goldsmith scan has 7" in (gate.explanation or "")
    assert "guest-scan.json" in (gate.explanation or "")
    # a guest scan that did not run leaves the rootfs count alone
    off = {"status": "not_run", "reason": "turned off"}
    got = by_name(lenient, results(tmp_path, boot={"passed": True, "scanners": {"goldsmith": off}}))
    assert got["failures-not-excepted"].passed
    assert "booted image" not in got["failures-not-excepted"].observed


def test_missing_results_fail_every_gate_that_needs_them(tmp_path: Path) -> None:
    got = by_name(Gates(), results(tmp_path, scan=False))
    assert not any(g.passed for g in got.values())
    assert "goldsmith scan" in (got["failures-not-excepted"].explanation or "")
    assert got["boot-test"].observed == "no boot test result"


def test_a_boot_test_the_profile_does_not_require_is_not_evaluated(tmp_path: Path) -> None:
    got = by_name(LENIENT.model_copy(update={"boot_test": False}), results(tmp_path))
    assert got["boot-test"].passed and got["boot-test"].observed == "not evaluated"


def test_a_malformed_result_file_is_an_error_not_a_miss(tmp_path: Path) -> None:
    d = results(tmp_path, boot={"passed": "yes"})
    with pytest.raises(GoldsmithError, match="boolean"):
        read_results(d)
    (d / "boottest.json").unlink()
    (d / "scan.json").write_text('{"schema_version": 1}')
    with pytest.raises(GoldsmithError, match="not a goldsmith scan document"):
        read_results(d)


def test_gate_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = results(tmp_path, boot={"passed": True})
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\ngates:\n  lynis_min_hardening_index: 60\n  max_failures_not_excepted: 6\n"
        "  openscap_min_pass_rate: 30\n"
    )
    assert main(["gate", "--profile", str(profile), "--results", str(d), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["passed"] is True
    assert main(["gate", "--results", str(d)]) == EXIT_FAIL
    assert "MISS" in capsys.readouterr().out
    assert main(["gate", "--results", str(tmp_path / "nope")]) == EXIT_USAGE
