"""goldsmith scan on fake roots: exit codes, exceptions end to end, never writes."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from controls_fixtures import tree_hash, write

from goldsmith.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, main
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.errors import GoldsmithError
from goldsmith.model.profile_loader import load_profile
from goldsmith.model.records import Status
from goldsmith.scan.run import ScanOptions, scan_host, scan_rootfs

KEEP = "sysctl.ip-forward"
NOW = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.UTC)


def one_control_profile(tmp_path: Path, exceptions: str = "") -> Path:
    """A profile running only sysctl.ip-forward (every other catalogue control disabled)."""
    lines = ["name: one", "controls:"]
    lines += [f"  {cid}: {{enabled: false}}" for cid in load_catalogue().controls if cid != KEEP]
    p = tmp_path / "one.yaml"
    p.write_text("\n".join(lines) + "\n" + exceptions)
    return p


EXCEPTION = """\
exceptions:
  - control: sysctl.ip-forward
    justification: rootful Docker turns IPv4 forwarding on when it starts
    compensating_controls: [DOCKER-USER chain restricts forwarding]
    owner: platform
    approved_by: security
    expires: {expires}
"""


def root_with(tmp_path: Path, value: str) -> Path:
    root = tmp_path / "root"
    write(root, "/etc/sysctl.d/99-test.conf", f"net.ipv4.ip_forward = {value}\n")
    return root


def scan_cli(root: Path, profile: Path, *extra: str) -> int:
    return main(
        [
            *("scan", "--rootfs", str(root), "--profile", str(profile)),
            *("--no-lynis", "--no-openscap", *extra),
        ]
    )


def test_scan_exits_0_when_every_control_passes(tmp_path: Path) -> None:
    root = root_with(tmp_path, "0")
    out = tmp_path / "out"
    assert scan_cli(root, one_control_profile(tmp_path), "--out", str(out)) == EXIT_OK
    doc = json.loads((out / "scan.json").read_text())
    assert doc["summary"]["passed"] == 1 and doc["compliant"] is True
    assert (out / "scan.junit.xml").is_file() and (out / "scan.sarif").is_file()


def test_scan_exits_1_on_a_failure_not_excepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = root_with(tmp_path, "1")
    assert scan_cli(root, one_control_profile(tmp_path)) == EXIT_FAIL
    text = capsys.readouterr().out
    assert "sysctl.ip-forward" in text and "NOT compliant" in text


def test_an_exception_makes_the_failure_excepted_and_the_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = root_with(tmp_path, "1")
    profile = one_control_profile(tmp_path, EXCEPTION.format(expires="2099-01-01"))
    assert scan_cli(root, profile, "--json") == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    (f,) = doc["findings"]
    assert f["status"] == "excepted" and f["original_status"] == "fail"
    assert f["exception"]["justification"].startswith("rootful Docker")
    assert doc["exceptions"][0]["state"] == "active"


def test_an_expired_exception_fails_the_scan(tmp_path: Path) -> None:
    root = root_with(tmp_path, "1")
    profile = one_control_profile(tmp_path, EXCEPTION.format(expires="2020-01-01"))
    assert scan_cli(root, profile) == EXIT_FAIL


def test_config_errors_exit_2(tmp_path: Path) -> None:
    root = root_with(tmp_path, "0")
    profile = one_control_profile(tmp_path)
    assert main(["scan", "--profile", str(profile)]) == EXIT_USAGE  # neither target
    assert main(["scan", "--rootfs", str(root), "--host"]) == EXIT_USAGE  # both
    assert scan_cli(tmp_path / "missing", profile) == EXIT_USAGE
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nexceptions:\n  - control: x\n")
    assert scan_cli(root, bad) == EXIT_USAGE
    assert main(["scan", "--host", "--lynis", "--profile", str(profile)]) == EXIT_USAGE


def test_the_clock_and_id_are_injected(tmp_path: Path) -> None:
    root = root_with(tmp_path, "1")
    rid = uuid.UUID(int=7)
    loaded = load_profile(
        str(one_control_profile(tmp_path, EXCEPTION.format(expires="2026-05-31")))
    )
    r = scan_rootfs(
        root,
        loaded,
        ScanOptions(lynis=False, openscap=False),
        clock=lambda: NOW,
        new_id=lambda: rid,
    )
    assert r.id == rid and r.created == NOW and r.today == dt.date(2026, 6, 1)
    # expired yesterday (by the injected clock): not excepted
    assert r.items[0].finding.status is Status.FAIL and r.failures_not_excepted == 2


def test_a_full_catalogue_scan_never_writes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "/etc/ssh/sshd_config", "PermitRootLogin yes\n")
    write(root, "/etc/sysctl.conf", "net.ipv4.ip_forward = 1\n")
    write(root, "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root, "/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640)
    (root / "var/log").mkdir(parents=True)
    before = tree_hash(root)
    r = scan_rootfs(
        root, load_profile("nanoclaw-debian13"), ScanOptions(lynis=False, openscap=False)
    )
    assert tree_hash(root) == before
    c = r.counts()
    assert len(r.items) == len(load_catalogue().controls) > 250
    assert c[Status.FAIL] > 100 and c[Status.PASS] > 0


def test_scan_host_refuses_the_offline_scanners() -> None:
    loaded = load_profile("nanoclaw-debian13")
    with pytest.raises(GoldsmithError, match="not run by"):
        scan_host(loaded, ScanOptions(lynis=True, openscap=False))
