"""The default image against its own gates, from the session's rootfs scan and boot test.

`make image` evaluates the same gates with Lynis and OpenSCAP run inside the booted image.
Here (CI, TCG) they run on the rootfs only (Lynis in a chroot, oscap-chroot), because inside a
TCG guest each takes 15-30 minutes; those two gates are then evaluated over the offline
results, labelled as such, and they are not asserted: offline, OpenSCAP cannot see mounts or
unit state and Lynis sees no running process, so both read lower than on the booted image.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from goldsmith.boot.boottest import BoottestResult
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.pipeline.gates import (
    BOOTTEST_FILE,
    SCAN_FILE,
    GateResult,
    evaluate_gates,
    read_results,
)
from goldsmith.scan.merge import ScanReport

pytestmark = [pytest.mark.integration, pytest.mark.boot]


@pytest.fixture(scope="module")
def gates(
    scanned: tuple[ScanReport, str, str, Path],
    boot: BoottestResult,
    default_profile: LoadedProfile,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, GateResult]:
    results = tmp_path_factory.mktemp("gate-results")
    shutil.copy(scanned[3] / SCAN_FILE, results / SCAN_FILE)
    shutil.copy(boot.path, results / BOOTTEST_FILE)
    return {g.name: g for g in evaluate_gates(default_profile.profile.gates, read_results(results))}


@pytest.mark.parametrize("name", ["failures-not-excepted", "boot-test"])
def test_default_image_meets_its_gate(gates: dict[str, GateResult], name: str) -> None:
    gate = gates[name]
    assert gate.passed, f"{gate.observed}: {gate.explanation}"


def test_scanner_gates_are_evaluated_over_the_labelled_offline_results(
    gates: dict[str, GateResult],
) -> None:
    assert "from the chroot scan" in gates["lynis-hardening-index"].observed
    assert "oscap-chroot on the rootfs" in gates["openscap-cis-l2-pass-rate"].observed
