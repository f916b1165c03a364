"""The SSH client's command lines: root by ``sudo -A`` with the guest's askpass helper."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from goldsmith.boot import ssh
from goldsmith.boot.ssh import SshClient, TestKey

ASKPASS = "/var/lib/gsboottest/goldsmith-askpass"


def client(tmp_path: Path, askpass: str | None = ASKPASS) -> SshClient:
    key = TestKey(
        private=tmp_path / "id_ed25519",
        public=tmp_path / "id_ed25519.pub",
        public_text="ssh-ed25519 AAAA t@x",
        fingerprint="SHA256:t",
        known_hosts=tmp_path / "known_hosts",
    )
    return SshClient("127.0.0.1", 2222, "gsboottest", key, askpass=askpass)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        seen.append({"argv": argv, **kw})
        return subprocess.CompletedProcess(argv, 0, b"ok\n", b"")

    monkeypatch.setattr(ssh.subprocess, "run", fake_run)
    return seen


def test_sudo_runs_with_the_askpass_helper_not_without_a_password(
    tmp_path: Path, calls: list[dict[str, Any]]
) -> None:
    c = client(tmp_path)
    res = c.run(["sshd", "-T"], sudo=True)
    remote = calls[0]["argv"][-1]
    assert calls[0]["argv"][-2] == "--"
    assert remote == f"SUDO_ASKPASS={ASKPASS} sudo -A sshd -T"
    assert res.argv == (remote,)  # what commands.jsonl records: the helper's path only
    assert "sudo -n" not in remote and "NOPASSWD" not in remote
    line = c.run("cd /x && ./lynis audit system", sudo=True)
    assert line.argv[0] == f"SUDO_ASKPASS={ASKPASS} sudo -A sh -c 'cd /x && ./lynis audit system'"
    plain = c.run(["true"])
    assert plain.argv[0] == "true"  # no sudo unless asked for


def test_the_helper_path_is_shell_quoted(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    c = client(tmp_path, askpass="/opt/odd dir/askpass")
    assert c.sudo() == "SUDO_ASKPASS='/opt/odd dir/askpass' sudo -A"


def test_push_tar_streams_stdin_to_tar_under_sudo_askpass(
    tmp_path: Path, calls: list[dict[str, Any]]
) -> None:
    c = client(tmp_path)
    c.push_tar(b"TARDATA", "/var/lib/goldsmith-boottest")
    (call,) = calls
    sudo = f"SUDO_ASKPASS={ASKPASS} sudo -A"
    assert call["argv"][-1] == (
        f"{sudo} mkdir -p -m 0700 /var/lib/goldsmith-boottest && "
        f"{sudo} tar -x -C /var/lib/goldsmith-boottest"
    )
    assert call["input"] == b"TARDATA"  # sudo -A asks the helper, so stdin is tar's


def test_without_a_helper_sudo_never_prompts(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    assert client(tmp_path, askpass=None).run(["true"], sudo=True).argv[0] == "sudo -n true"
