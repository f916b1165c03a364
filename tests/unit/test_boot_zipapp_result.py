"""The zipapp's bootstrap and pip arguments; the boot test's SSH policy results and JSON."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipapp
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from goldsmith.boot import zipapp as gz
from goldsmith.boot.boottest import (
    Fail2banExpectation,
    _tar_of,
    recorded_profile,
    setid_from_inventory,
    ssh_policy_checks,
)
from goldsmith.boot.checks import CheckResult
from goldsmith.boot.ssh import CommandResult, SshClient, TestKey
from goldsmith.model.records import Status

SSHD_T_HARDENED = (
    "port 2222\npermitrootlogin no\npasswordauthentication no\nkbdinteractiveauthentication no\n"
)


def test_bootstrap_extracts_once_beside_the_archive_and_runs_the_cli(tmp_path: Path) -> None:
    app = tmp_path / "app"
    pkg = app / "site" / "goldsmith"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(
        "import sys\ndef main(argv):\n    print('cli', argv, __file__)\n    return 3\n"
    )
    (app / "__main__.py").write_text(gz.BOOTSTRAP)
    (app / gz.STAMP).write_text(json.dumps({"digest": "d1"}))
    pyz = tmp_path / "g.pyz"
    zipapp.create_archive(app, pyz, compressed=True)
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, str(pyz), "scan", "--host"], capture_output=True, text=True
        )
        assert proc.returncode == 3
        assert "cli ['scan', '--host']" in proc.stdout
        # imported from the extracted tree (a real directory), not from inside the zip
        assert f"{pyz}.d/d1/site/goldsmith/cli.py" in proc.stdout
    assert (tmp_path / "g.pyz.d/d1/.complete").is_file()


def test_bootstrap_names_the_stamp_it_is_built_with() -> None:
    assert f'STAMP = "{gz.STAMP}"' in gz.BOOTSTRAP


def test_pip_targets_the_guest_python_and_pins(tmp_path: Path) -> None:
    reqs, pins = gz.dependency_pins()
    assert any(r.startswith("pydantic") for r in reqs)
    assert not [r for r in reqs if "pytest" in r or "mypy" in r]  # dev extras stay out
    assert not [p for p in pins if p.lower().startswith("goldsmith==")]
    argv = gz.pip_argv(tmp_path / "site", reqs, tmp_path / "c.txt", "3.13")
    assert argv[argv.index("--python-version") + 1] == "3.13"
    assert "cp313" in argv and "--only-binary=:all:" in argv
    assert argv[argv.index("-c") + 1] == str(tmp_path / "c.txt")


def test_tar_for_the_guest_is_root_owned(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/f").write_text("x")
    data = _tar_of([(tmp_path / "d", "lynis")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert {m.name for m in members} == {"lynis", "lynis/f"}
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "root" for m in members)


class FakeClient(SshClient):
    def __init__(self, answers: dict[str, CommandResult]) -> None:
        key = TestKey(Path("/k"), Path("/k.pub"), "ssh-ed25519 X", "SHA256:k", Path("/kh"))
        super().__init__("127.0.0.1", 2222, "gsboottest", key)
        self.answers = answers

    def run(  # type: ignore[override]
        self,
        command: Sequence[str] | str,
        *,
        user: str | None = None,
        options: Sequence[str] = (),
        **kw: object,
    ) -> CommandResult:
        if user == "root":
            return self.answers["root"]
        if any("PreferredAuthentications" in o for o in options):
            return self.answers["password"]
        return self.answers["sshd"]


def _res(rc: int, out: str = "", err: str = "") -> CommandResult:
    return CommandResult(("x",), rc, out, err, 0.1)


def test_ssh_policy_passes_when_refused_and_configured() -> None:
    client = FakeClient(
        {
            "sshd": _res(0, SSHD_T_HARDENED),
            "password": _res(255, err="gsboottest@127.0.0.1: Permission denied (publickey)."),
            "root": _res(255, err="root@127.0.0.1: Permission denied (publickey)."),
        }
    )
    results = {r.id: r for r in ssh_policy_checks(client, 4.2)}
    assert [r.status for r in results.values()] == [Status.PASS] * 3
    assert "offered methods: publickey" in results["ssh.password-refused"].observed


def test_ssh_policy_fails_on_offered_password_and_root_login() -> None:
    client = FakeClient(
        {
            "sshd": _res(0, "permitrootlogin without-password\npasswordauthentication yes\n"),
            "password": _res(255, err="u@h: Permission denied (publickey,password)."),
            "root": _res(0),
        }
    )
    results = {r.id: r for r in ssh_policy_checks(client, 1.0)}
    assert results["ssh.password-refused"].status is Status.FAIL
    assert results["ssh.root-refused"].status is Status.FAIL
    assert "logged in" in results["ssh.root-refused"].observed


class BanningClient(FakeClient):
    """sshd refuses root; after ``ban_after`` refused logins the connection itself fails."""

    def __init__(self, ban_after: int | None, jail_ok: bool = True) -> None:
        super().__init__({})
        self.ban_after, self.jail_ok = ban_after, jail_ok
        self.failures = 0
        self.calls: list[str] = []

    def run(  # type: ignore[override]
        self,
        command: Sequence[str] | str,
        *,
        user: str | None = None,
        options: Sequence[str] = (),
        **kw: object,
    ) -> CommandResult:
        line = command if isinstance(command, str) else " ".join(command)
        self.calls.append(f"{user or 'test'}:{line}")
        if self.ban_after is not None and self.failures >= self.ban_after:
            return _res(255, err="ssh: connect to host 127.0.0.1 port 2222: Connection refused")
        if line.startswith("fail2ban-client"):
            if self.jail_ok:
                return _res(0, "Status for the jail: sshd\n|- Filter\n`- Actions\n")
            return _res(255, err="ERROR  NOK: ('sshd',)")
        if user == "root" or any("PreferredAuthentications" in o for o in options):
            self.failures += 1
            return _res(255, err="u@127.0.0.1: Permission denied (publickey).")
        if line == "true":
            return _res(0)
        return _res(0, SSHD_T_HARDENED)


def test_fail2ban_ban_is_proven_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("goldsmith.boot.boottest.time.sleep", lambda s: None)
    client = BanningClient(ban_after=3)
    results = {r.id: r for r in ssh_policy_checks(client, 1.0, Fail2banExpectation(3, 2222))}
    assert [r.status for r in results.values()] == [Status.PASS] * 4
    ban = results["ssh.fail2ban-bans"]
    assert "connection refused after 2 more failed root login(s)" in ban.observed
    assert "key login for gsboottest then: refused" in ban.observed
    # the jail is read before the first refused login
    assert client.calls[0] == "test:fail2ban-client status sshd"


def test_fail2ban_that_never_bans_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("goldsmith.boot.boottest.time.sleep", lambda s: None)
    results = {
        r.id: r
        for r in ssh_policy_checks(BanningClient(ban_after=None), 1.0, Fail2banExpectation(3, 2222))
    }
    ban = results["ssh.fail2ban-bans"]
    assert ban.status is Status.FAIL
    assert "never banned after 6 more failed root logins" in ban.observed


def test_fail2ban_jail_missing_fails_even_if_connections_drop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("goldsmith.boot.boottest.time.sleep", lambda s: None)
    client = BanningClient(ban_after=2, jail_ok=False)
    results = {r.id: r for r in ssh_policy_checks(client, 1.0, Fail2banExpectation(3, 2222))}
    assert results["ssh.fail2ban-bans"].status is Status.FAIL


def test_check_result_json_marks_excepted_as_passed() -> None:
    doc = CheckResult("a", "t", Status.EXCEPTED, "e", "o", "h").to_json()
    assert doc["passed"] is True and doc["status"] == "excepted"
    assert CheckResult("a", "t", Status.ERROR, "e", "o", "h").to_json()["passed"] is False


def test_recorded_profile_and_setid_inventory(tmp_path: Path) -> None:
    (tmp_path / "build.json").write_text(
        json.dumps({"profile": {"sources": ["goldsmith:profiles/nanoclaw-debian13.yaml"]}})
    )
    assert recorded_profile(tmp_path) == "nanoclaw-debian13"
    (tmp_path / "final-inventory.json").write_text(
        json.dumps(
            {
                "files": [
                    {"path": "/usr/bin/su", "type": "file", "mode": "4755"},
                    {"path": "/var/mail", "type": "dir", "mode": "2775"},
                    {"path": "/usr/bin/ls", "type": "file", "mode": "0755"},
                ]
            }
        )
    )
    assert setid_from_inventory(tmp_path / "final-inventory.json") == {"/usr/bin/su"}


def test_guest_scan_gets_the_profiles_exceptions_and_none_for_the_test_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The test account authenticates to sudo (no NOPASSWD): the profile pushed into the
    guest carries the profile's own exceptions, no sudo.nopasswd-absent of the boot test."""
    import io
    import tarfile
    from types import SimpleNamespace

    from goldsmith.boot import boottest, zipapp
    from goldsmith.boot.ssh import CommandResult
    from goldsmith.model.profile_loader import load_profile

    pyz = tmp_path / "goldsmith.pyz"
    pyz.write_bytes(b"PK")
    fake_app = SimpleNamespace(path=pyz, sha256="0" * 64, python="3.13", pins=())
    monkeypatch.setattr(zipapp, "build_zipapp", lambda *a, **k: fake_app)
    pushed: dict[str, bytes] = {}

    class Client:
        def push_tar(self, data: bytes, remote_dir: str) -> None:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for m in tar.getmembers():
                    f = tar.extractfile(m)
                    assert f is not None
                    pushed[m.name] = f.read()

        def run(self, argv: list[str], *, sudo: bool, timeout: float) -> CommandResult:
            assert sudo
            out = json.dumps({"summary": {"failed": 0}}) if "--json" in argv else "usage"
            return CommandResult((" ".join(argv),), 0, out, "", 0.1)

    loaded = load_profile("nanoclaw-debian13")
    art = tmp_path / "art"
    art.mkdir()
    info = boottest._scan_goldsmith(
        Client(),  # type: ignore[arg-type]
        loaded.profile,
        boottest.BoottestOptions(exceptions=tuple(loaded.profile.exceptions)),
        art,
    )
    assert info["status"] == "ran"
    doc = json.loads(pushed["profile.yaml"])
    assert [e["control"] for e in doc["exceptions"]] == [
        e.control for e in loaded.profile.exceptions
    ]
    assert "sudo.nopasswd-absent" not in {e["control"] for e in doc["exceptions"]}
    assert not hasattr(boottest, "boottest_exception")
    # and it loads as the same profile
    (tmp_path / "profile.yaml").write_bytes(pushed["profile.yaml"])
    again = load_profile(str(tmp_path / "profile.yaml")).profile
    assert again.controls == loaded.profile.controls
    assert again.exceptions == loaded.profile.exceptions


def test_guest_scanners_run_side_by_side_and_an_error_stays_one_scanners(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import threading

    from goldsmith.boot import boottest
    from goldsmith.errors import BootTestError
    from goldsmith.model.profile_loader import load_profile

    both = threading.Barrier(2, timeout=10)  # passes only if Lynis and OpenSCAP overlap

    def lynis(*a: object) -> dict[str, object]:
        both.wait()
        return {"status": "ran", "hardening_index": 80}

    def oscap(*a: object) -> dict[str, object]:
        both.wait()
        raise BootTestError("copying oscap into the guest failed (exit 255): gone")

    monkeypatch.setattr(boottest, "_scan_goldsmith", lambda *a: {"status": "ran"})
    monkeypatch.setattr(boottest, "_scan_lynis", lynis)
    monkeypatch.setattr(boottest, "_scan_openscap", oscap)
    profile = load_profile("nanoclaw-debian13").profile
    out = boottest._scanners(
        FakeClient({}), profile, boottest.BoottestOptions(cache_dir=tmp_path), tmp_path
    )
    assert out["goldsmith"] == {"status": "ran"}
    assert out["lynis"]["hardening_index"] == 80
    assert out["openscap"]["status"] == "error" and "exit 255" in out["openscap"]["reason"]


def test_late_checks_run_between_the_guest_goldsmith_scan_and_lynis_openscap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from goldsmith.boot import boottest
    from goldsmith.boot.checks import AideBaselineCheck, default_checks, split_late
    from goldsmith.model.profile_loader import load_profile

    order: list[str] = []

    def step(name: str) -> Callable[..., dict[str, object]]:
        def run(*a: object) -> dict[str, object]:
            order.append(name)
            return {"status": "ran"}

        return run

    monkeypatch.setattr(boottest, "_scan_goldsmith", step("goldsmith"))
    monkeypatch.setattr(boottest, "_scan_lynis", step("lynis"))
    monkeypatch.setattr(boottest, "_scan_openscap", step("openscap"))
    profile = load_profile("nanoclaw-debian13").profile
    boottest._scanners(
        FakeClient({}),
        profile,
        boottest.BoottestOptions(cache_dir=tmp_path, guest_lynis=True),
        tmp_path,
        between=lambda: order.append("late checks"),
    )
    assert order[:2] == ["goldsmith", "late checks"]
    assert sorted(order[2:]) == ["lynis", "openscap"]

    # the AIDE baseline check waits for the first-boot job; the unit-state checks come after
    # it (a unit still activating is not active); everything keeps its listed order
    checks = default_checks()
    now, late = split_late(checks)
    assert [c.id for c in late] == [
        "live.aide-baseline",
        "live.enabled-units-active",
        "live.no-failed-units",
    ]
    assert now == [c for c in checks if c not in late]
    assert isinstance(late[0], AideBaselineCheck)


class ScriptedOscapClient(FakeClient):
    """A guest whose oscap run answers ``exits`` in turn; the rest succeed."""

    def __init__(self, exits: list[int], results_xml: str) -> None:
        super().__init__({})
        self.exits = exits
        self.results_xml = results_xml
        self.oscap_runs = 0

    def run(  # type: ignore[override]
        self, command: Sequence[str] | str, **kw: object
    ) -> CommandResult:
        text = command if isinstance(command, str) else " ".join(command)
        if "xccdf eval" in text:
            rc = self.exits[self.oscap_runs]
            self.oscap_runs += 1
            err = "Segmentation fault" if rc > 128 else ""
            return _res(rc, f"oscap run {self.oscap_runs}", err)
        if "results.xml" in text:
            return _res(0, self.results_xml)
        if "report.html" in text:
            return _res(0, "<html></html>")
        return _res(0)  # mkdir and tar of the bundle


@pytest.mark.parametrize(
    ("exits", "status", "runs", "crashes"),
    [
        ([139, 2], "ran", 2, 1),  # one SIGSEGV: run again, and the second run counts
        ([2], "ran", 1, 0),
        ([139, 139], "error", 2, 1),  # crashed twice: an error, with the second one's output
        ([1], "error", 1, 0),  # oscap's own error is not retried
    ],
)
def test_guest_oscap_crash_is_run_once_more(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    exits: list[int],
    status: str,
    runs: int,
    crashes: int,
) -> None:
    import gzip

    from goldsmith.boot import boottest, oscap_bundle
    from goldsmith.scan import content

    asset = Path(__file__).parent.parent / "assets" / "openscap"
    xml = gzip.decompress(
        (asset / "nanoclaw-hardened-cis-l2-server.oscap-results.xml.gz").read_bytes()
    ).decode()
    monkeypatch.setattr(content, "ensure_ssg_content", lambda _cache: tmp_path / "ssg-ds.xml")
    monkeypatch.setattr(
        oscap_bundle, "bundle_oscap", lambda _ds: oscap_bundle.OscapBundle(b"", (), "1.3.7")
    )
    client = ScriptedOscapClient(exits, xml)
    info = boottest._scan_openscap(client, boottest.BoottestOptions(cache_dir=tmp_path), tmp_path)
    assert info["status"] == status and client.oscap_runs == runs
    assert len(info.get("crashes", [])) == crashes
    logs = sorted(p.name for p in tmp_path.glob("guest-oscap-crash-*.log"))
    assert logs == [f"guest-oscap-crash-{i + 1}.log" for i in range(crashes)]
    if crashes:
        assert info["crashes"][0] == "killed by SIGSEGV, output in guest-oscap-crash-1.log"
        assert "Segmentation fault" in (tmp_path / logs[0]).read_text()
    if status == "ran":
        assert info["pass_rate"] == 93.05
    else:
        assert info["exit"] == exits[-1]
