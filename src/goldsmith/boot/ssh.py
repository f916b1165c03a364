"""SSH into the booted test copy with the OpenSSH client: a per-run key, bounded commands.

Every connection uses ``BatchMode`` (never a prompt), a ``ConnectTimeout``, a private
``UserKnownHostsFile`` with ``StrictHostKeyChecking=accept-new`` (the guest's host key is new
on every boot; it is recorded on first contact and must not change during the run), no agent,
no forwarding, no configuration from ``~/.ssh/config`` (``-F none``). The private key is made
per run with ``ssh-keygen`` inside a 0700 temporary directory that is deleted afterwards; it
never leaves that directory.

Commands run as root with ``SUDO_ASKPASS=<helper> sudo -A``: the test account authenticates
to sudo with its password like any admin (the helper in its home, written into the copy by
:mod:`goldsmith.boot.inject`, prints it). The client knows only the helper's path, never the
password, so no command line, log or record can carry it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from goldsmith.errors import BootTestError, ToolMissingError

log = logging.getLogger(__name__)

SSH_PACKAGE = "openssh-client"
#: "Permission denied (publickey,password)." -> the methods the server still offers
_DENIED_RE = re.compile(r"Permission denied \(([a-z0-9,@.-]*)\)")
#: transient failures while sshd is starting (or the forward is not accepted yet)
_NOT_READY = (
    "Connection refused",
    "Connection reset",
    "Connection closed",
    "kex_exchange_identification",
    "timed out",
    "Timeout, server",
    "banner exchange",
)


@dataclass(frozen=True)
class TestKey:
    """A per-run ed25519 key pair; ``private`` stays in its temporary directory."""

    __test__ = False  # not a pytest class

    private: Path
    public: Path
    public_text: str  # "ssh-ed25519 AAAA... comment"
    fingerprint: str  # SHA256:...
    known_hosts: Path  # beside the key, for this run only


@contextlib.contextmanager
def test_key(comment: str = "goldsmith-boottest") -> Iterator[TestKey]:
    """Generate an ed25519 key in a fresh 0700 directory; delete it (and known_hosts) after."""
    for tool in ("ssh-keygen", "ssh"):
        if shutil.which(tool) is None:
            raise ToolMissingError(tool, SSH_PACKAGE)
    with tempfile.TemporaryDirectory(prefix="goldsmith-sshkey-") as tmp:
        d = Path(tmp)
        d.chmod(0o700)
        private = d / "id_ed25519"
        _checked(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
            "generating the test key",
        )
        public = private.with_suffix(".pub")
        fp = _checked(["ssh-keygen", "-l", "-f", str(public)], "fingerprinting the test key")
        known = d / "known_hosts"
        known.touch(mode=0o600)
        yield TestKey(
            private=private,
            public=public,
            public_text=public.read_text().strip(),
            fingerprint=fp.split()[1] if len(fp.split()) > 1 else fp.strip(),
            known_hosts=known,
        )


def _checked(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise BootTestError(f"{what} failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]  # the remote command as run (a shell line, shell-quoted)
    returncode: int  # 255 is ssh's own failure; -1 a local timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class SshClient:
    host: str
    port: int
    user: str
    key: TestKey
    connect_timeout: int = 10
    extra_options: Sequence[str] = field(default_factory=tuple)
    #: the guest's askpass helper for ``sudo -A``; None: ``sudo -n`` (an account that needs
    #: no password, which the boot test's is not)
    askpass: str | None = None

    def sudo(self) -> str:
        """The prefix that runs a command as root in the guest (a shell line's start)."""
        if self.askpass is None:
            return "sudo -n"
        return f"SUDO_ASKPASS={shlex.quote(self.askpass)} sudo -A"

    def base_argv(
        self, *, user: str | None = None, options: Sequence[str] = (), identity: bool = True
    ) -> list[str]:
        argv = [
            "ssh",
            "-F",
            "none",
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"UserKnownHostsFile={self.key.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "ForwardAgent=no",
            "-o",
            "ForwardX11=no",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
            "-o",
            "LogLevel=ERROR",
        ]
        if identity:
            argv += ["-i", str(self.key.private)]
        for opt in (*self.extra_options, *options):
            argv += ["-o", opt]
        return [*argv, "-l", user or self.user, self.host]

    def run(
        self,
        command: Sequence[str] | str,
        *,
        timeout: float = 120,
        sudo: bool = False,
        input: bytes | None = None,
        user: str | None = None,
        options: Sequence[str] = (),
        identity: bool = True,
    ) -> CommandResult:
        """Run a command in the guest. A sequence is shell-quoted; a string is a shell line.

        Never raises for a failing command: the result carries the exit status (255: ssh
        could not connect or authenticate; -1: ``timeout`` passed and ssh was killed).
        """
        line = command if isinstance(command, str) else shlex.join(command)
        if sudo:
            line = f"{self.sudo()} " + (
                line if not isinstance(command, str) else "sh -c " + shlex.quote(line)
            )
        argv = [*self.base_argv(user=user, options=options, identity=identity), "--", line]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                input=input if input is not None else b"",
                capture_output=True,
                timeout=timeout,
            )
            rc = proc.returncode
            out, err = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            rc = -1
            out = e.stdout or b""
            err = (e.stderr or b"") + f"\n(killed after {timeout:.0f} s)".encode()
        seconds = round(time.monotonic() - t0, 3)
        res = CommandResult(
            argv=(line,),
            returncode=rc,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            seconds=seconds,
        )
        log.debug("ssh %s -> %d in %.1f s", line, rc, seconds)
        return res

    def push_tar(self, tar_bytes: bytes, remote_dir: str, *, timeout: float = 300) -> None:
        """Unpack a tar stream as root into ``remote_dir`` (created 0700 if missing)."""
        q = shlex.quote(remote_dir)
        # sudo -A takes the password from the helper, so stdin is tar's alone
        res = self.run(
            f"{self.sudo()} mkdir -p -m 0700 {q} && {self.sudo()} tar -x -C {q}",
            input=tar_bytes,
            timeout=timeout,
        )
        if not res.ok:
            raise BootTestError(
                f"copying into the guest ({remote_dir}) failed (exit {res.returncode}): "
                f"{res.stderr.strip()[-500:]}"
            )

    def wait_until_ready(self, *, timeout: float, interval: float = 3.0) -> float:
        """Retry ``true`` until a login succeeds; seconds waited. BootTestError on timeout."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = ""
        while True:
            res = self.run(["true"], timeout=self.connect_timeout + 20)
            if res.ok:
                return round(time.monotonic() - t0, 3)
            last = res.stderr.strip()
            if res.returncode == 255 and not any(s in last for s in _NOT_READY):
                # the server answered and refused: retrying will not help
                raise BootTestError(
                    f"SSH login as {self.user} on port {self.port} was refused: {last}",
                    hint="the test account must be in the SSH allow group, with the key in "
                    "its authorized_keys",
                )
            if time.monotonic() + interval > deadline:
                raise BootTestError(
                    f"no SSH login within {timeout:.0f} s on 127.0.0.1:{self.port}: {last}"
                )
            time.sleep(interval)


def offered_methods(stderr: str) -> tuple[str, ...] | None:
    """The authentication methods a server listed when it refused a login, or None."""
    found = _DENIED_RE.findall(stderr)
    if not found:
        return None
    return tuple(m for m in found[-1].split(",") if m)
