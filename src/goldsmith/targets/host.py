"""The live host as a target: root "/", plain os calls, commands run directly.

It keeps the same contract as the rootfs target where it matters: writes are atomic (temp
file in the same directory, validate, fsync, rename; a symlink at the destination is
replaced, not followed), chown acts on the entry itself, rmtree never follows a symlink and
never crosses into another filesystem.
"""

# ruff: noqa: PTH101, PTH102, PTH103, PTH108, PTH110, PTH112, PTH115, PTH116, PTH120, PTH208, PTH211
# (os calls on purpose: dir_fd-relative and O_NOFOLLOW variants have no pathlib form)

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from goldsmith.errors import BuildError, TargetError, ValidationFailedError
from goldsmith.targets.base import RunResult, StatResult, Target
from goldsmith.targets.confine import (
    atomic_write,
    in_image_components,
    oserror,
    read_regular,
    rmtree_at,
    to_stat_result,
)

log = logging.getLogger(__name__)

#: The environment every command starts from; callers add to it with ``env=``.
BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "HOME": "/root",
}


def command_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(BASE_ENV)
    if extra:
        env.update(extra)
    return env


def run_process(
    argv: Sequence[str],
    *,
    shown: Sequence[str] | None = None,
    input: str | None = None,
    env: Mapping[str, str],
    timeout: float | None,
    check: bool,
) -> RunResult:
    """Run ``argv`` in its own process group; on timeout or interrupt the whole group is
    killed. ``shown`` is the argv recorded in results and errors (without a chroot prefix)."""
    shown_t = tuple(shown if shown is not None else argv)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        raise BuildError(f"cannot start {shown_t[0]}: {exc.strerror}", argv=shown_t) from exc
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        raise BuildError(
            f"command timed out after {timeout:g} s and was killed", argv=shown_t, stderr=stderr
        ) from None
    except BaseException:  # KeyboardInterrupt: leave nothing running behind us
        _kill_group(proc)
        proc.wait()
        raise
    result = RunResult(argv=shown_t, returncode=proc.returncode, stdout=stdout, stderr=stderr)
    if check and not result.ok:
        raise BuildError(
            f"command failed with exit status {proc.returncode}", argv=shown_t, stderr=stderr
        )
    return result


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def validate_with(target: Target, argv: Sequence[str], path: str) -> Callable[[str], None]:
    """Run a validator argv (``%s`` = the temp file) inside ``target``; raise if it refuses."""
    if not any("%s" in a for a in argv):
        raise TargetError(
            f"validate command for {path} has no %s: {' '.join(argv)}",
            hint="the validator is given the temp file as %s, e.g. ['sshd', '-t', '-f', '%s']",
        )

    def check(tmp: str) -> None:
        cmd = [a.replace("%s", tmp) for a in argv]
        result = target.run(cmd, check=False)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip()
            raise ValidationFailedError(
                f"validator {' '.join(argv)} rejected the new content of {path} "
                f"(exit status {result.returncode})" + (f":\n{detail}" if detail else ""),
                hint="nothing was written; the old content is unchanged",
            )

    return check


class HostTarget(Target):
    """The running system goldsmith is on."""

    live = True

    @property
    def root(self) -> Path:
        return Path("/")

    @staticmethod
    def _path(path: str) -> str:
        return "/" + "/".join(in_image_components(path))

    # reading -------------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        p = self._path(path)
        try:
            st = os.stat(p)
            parent, name = os.path.split(os.path.realpath(p))
            dir_fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                return read_regular(dir_fd, name, st, p)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise oserror(p, exc, "read") from exc

    def exists(self, path: str) -> bool:
        return os.path.exists(self._path(path))

    def lstat(self, path: str) -> StatResult | None:
        try:
            return to_stat_result(os.lstat(self._path(path)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def stat(self, path: str) -> StatResult | None:
        try:
            return to_stat_result(os.stat(self._path(path)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def readlink(self, path: str) -> str:
        p = self._path(path)
        try:
            return os.readlink(p)
        except OSError as exc:
            raise oserror(p, exc, "readlink") from exc

    def listdir(self, path: str) -> list[str]:
        p = self._path(path)
        try:
            return sorted(os.listdir(p))
        except OSError as exc:
            raise oserror(p, exc, "listdir") from exc

    def glob(self, pattern: str) -> list[str]:
        from goldsmith.targets.rootfs import glob_target

        return glob_target(self, pattern)

    # writing -------------------------------------------------------------------------------
    def write_bytes(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        validate: Sequence[str] | None = None,
    ) -> None:
        p = self._path(path)
        parent, name = os.path.split(p)
        if not name:
            raise TargetError(f"write {p}: not a file path")
        check = validate_with(self, validate, p) if validate is not None else None
        try:
            dir_fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise oserror(p, exc, "write") from exc
        try:
            existing = os.lstat(name, dir_fd=dir_fd) if _lexists(name, dir_fd) else None
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise TargetError(f"write {p}: is a directory")
            atomic_write(
                dir_fd,
                name,
                os.path.realpath(parent),
                data,
                mode=mode,
                uid=uid,
                gid=gid,
                validate=check,
            )
        except OSError as exc:
            raise oserror(p, exc, "write") from exc
        finally:
            os.close(dir_fd)

    def chmod(self, path: str, mode: int) -> None:
        p = self._path(path)
        try:
            os.chmod(p, mode & 0o7777)
        except OSError as exc:
            raise oserror(p, exc, "chmod") from exc

    def chown(self, path: str, uid: int, gid: int) -> None:
        p = self._path(path)
        try:
            os.chown(p, uid, gid, follow_symlinks=False)
        except OSError as exc:
            raise oserror(p, exc, "chown") from exc

    def mkdir(self, path: str, mode: int = 0o755, *, parents: bool = False) -> None:
        p = self._path(path)
        if os.path.isdir(p):
            return
        try:
            if parents:
                os.makedirs(os.path.dirname(p), mode=0o755, exist_ok=True)
            os.mkdir(p, mode)
            os.chmod(p, mode & 0o7777)
        except OSError as exc:
            raise oserror(p, exc, "mkdir") from exc

    def unlink(self, path: str) -> None:
        p = self._path(path)
        try:
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                raise TargetError(f"unlink {p}: is a directory", hint="use rmtree for directories")
            os.unlink(p)
        except OSError as exc:
            raise oserror(p, exc, "unlink") from exc

    def rmtree(self, path: str) -> None:
        p = self._path(path)
        parent, name = os.path.split(p)
        if not name:
            raise TargetError("rmtree /: refusing to remove the root")
        try:
            st = os.lstat(p)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(p)
                return
            dir_fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                rmtree_at(dir_fd, name, st.st_dev, p)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise oserror(p, exc, "rmtree") from exc

    def symlink(self, target: str, path: str) -> None:
        p = self._path(path)
        try:
            os.symlink(target, p)
        except OSError as exc:
            raise oserror(p, exc, "symlink") from exc

    # commands ------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        if not argv:
            raise TargetError("run: empty argv")
        return run_process(argv, input=input, env=command_env(env), timeout=timeout, check=check)


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


__all__ = ["BASE_ENV", "HostTarget", "command_env", "run_process", "validate_with"]
