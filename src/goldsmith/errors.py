"""One error hierarchy. Library code raises these; only the CLI catches them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from signal import SIGHUP, SIGTERM
from types import FrameType


class GoldsmithError(Exception):
    """Base of every expected failure: a message for the user and an optional hint."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        text = self.message
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class ProfileError(GoldsmithError):
    """A profile that cannot be read or does not validate. Names file, line, column, key."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        where = ""
        if file is not None:
            where = file
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        if key:
            where += f"{key}: "
        super().__init__(where + message, hint)


class ToolMissingError(GoldsmithError):
    """A host tool goldsmith needs is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"required tool {tool!r} is not installed",
            hint=f"install it with: apt-get install {package}",
        )
        self.tool = tool
        self.package = package


class TargetEscapeError(GoldsmithError):
    """A path would resolve outside the target's root (hostile or broken image)."""

    exit_code = 1


class TargetError(GoldsmithError):
    """An operation on a target failed (missing file, wrong type, validator refused)."""

    exit_code = 1


class ValidationFailedError(TargetError):
    """A validator command rejected content before it was written."""


class BuildError(GoldsmithError):
    """A build step failed; carries the failing argv and the tail of its stderr."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] | None = None,
        stderr: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.argv = list(argv) if argv is not None else None
        self.stderr_tail = _tail(stderr) if stderr else None
        text = message
        if self.argv:
            text += "\ncommand: " + " ".join(self.argv)
        if self.stderr_tail:
            text += "\nstderr (tail):\n" + self.stderr_tail
        super().__init__(text, hint)


class BootTestError(GoldsmithError):
    """The image did not boot to a login prompt within its time limit."""

    exit_code = 1


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so every
    ``finally`` (chroot unmounts, loop devices, the QEMU process) runs before the exit."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextmanager
def terminate_as_interrupt() -> Iterator[list[int]]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only;
    elsewhere the block runs unchanged). Yields the list of signals received (a framework
    between may turn the exception into another exit). The previous handlers come back
    afterwards."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (SIGTERM, SIGHUP)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
