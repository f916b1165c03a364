"""The whole boot test on the default image the session built: ONE boot for every assertion.

Boots a throwaway copy with the test account, logs in over SSH on the profile's port, proves
the SSH policy, runs the live checks and the scanners in the guest, powers off.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from goldsmith.boot.boottest import RESULT_NAME, BoottestResult
from goldsmith.boot.checks import default_checks
from goldsmith.boot.inject import sha256_file
from goldsmith.pipeline.build import BuildResult

pytestmark = [pytest.mark.integration, pytest.mark.boot]


def test_result_file_is_written_and_complete(boot: BoottestResult, built: BuildResult) -> None:
    doc = json.loads((built.out_dir / RESULT_NAME).read_text())
    assert doc == json.loads(json.dumps(boot.doc, default=str))
    assert doc["schema"] == "goldsmith.boottest/v1"
    assert isinstance(doc["passed"], bool)
    assert doc["accel"] in ("kvm", "tcg")
    assert doc["booted"]["injection"]["user"] == "gsboottest"
    assert "plus the boot-test account" in doc["booted"]["what"]
    for c in doc["checks"]:
        assert {"id", "status", "expected", "observed", "how"} <= set(c)


def test_gold_image_is_unchanged(boot: BoottestResult, built: BuildResult) -> None:
    image = boot.doc["image"]
    assert image["unchanged"] is True
    assert image["sha256"] == image["sha256_after"] == sha256_file(Path(image["path"]))


def test_nothing_is_left_behind(boot: BoottestResult, work_root: Path) -> None:
    assert list(work_root.iterdir()) == [], "work directory (disk copy) not removed"
    qemu = subprocess.run(["pgrep", "-f", str(work_root)], capture_output=True, text=True)
    assert qemu.stdout == "", "a QEMU process for the copy is still running"
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(work_root) not in loops


def test_ssh_login_with_key_on_the_hardened_port(boot: BoottestResult) -> None:
    assert boot.doc["error"] is None, boot.doc["error"]
    assert boot.doc["ssh"]["guest_port"] == 2222
    by = {c["id"]: c for c in boot.doc["checks"]}
    assert by["ssh.key-login"]["passed"]


def test_every_live_check_ran(boot: BoottestResult) -> None:
    ids = {c["id"] for c in boot.doc["checks"]}
    assert {c.id for c in default_checks()} <= ids
    assert {"ssh.password-refused", "ssh.root-refused", "ssh.fail2ban-bans"} <= ids


def test_default_image_passes_its_boot_test(boot: BoottestResult) -> None:
    failed = {
        c["id"]: f"{c['status']}: {c['observed'][:300]}"
        for c in boot.doc["checks"]
        if not c["passed"]
    }
    assert boot.passed, f"error: {boot.doc['error']}; failed checks: {failed}"


def test_scanners_ran_in_the_guest(boot: BoottestResult) -> None:
    scanners = boot.doc["scanners"]
    gs = scanners["goldsmith"]
    assert gs["status"] == "ran", gs
    assert "guest_lynis" in scanners["lynis"]["reason"]
    assert "guest_openscap" in scanners["openscap"]["reason"]


def test_goldsmith_scan_of_the_running_image_is_compliant(
    boot: BoottestResult, built: BuildResult
) -> None:
    """The zipapp's `goldsmith scan --host` inside the guest: every control passes or is
    excepted on the running system too (live sysctl values, running services)."""
    doc = json.loads((built.out_dir / "boottest" / "guest-scan.json").read_text())
    bad = [
        f"{f['control']}: {f['evidence']['observed'][:120]}"
        for f in doc["findings"]
        if f["status"] in ("fail", "error")
    ]
    excepted = {e["control"] for e in doc["exceptions"] if e["state"] == "active"}
    assert len(doc["findings"]) > 300, "the guest scan checked the whole catalogue"
    assert not [b for b in bad if b.split(":")[0] not in excepted], bad
    assert doc["summary"]["failures_not_excepted"] == 0, doc["summary"]
