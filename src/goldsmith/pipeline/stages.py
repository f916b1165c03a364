"""Stage bookkeeping shared by the pipelines: timing and progress callbacks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class StageEvent(StrEnum):
    START = "start"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class StageListener(Protocol):
    def __call__(self, stage: str, event: StageEvent, detail: str) -> None: ...


def _silent(stage: str, event: StageEvent, detail: str) -> None:
    return None


@dataclass
class StageClock:
    """Times each stage and tells a listener (the CLI's progress display) about it."""

    listener: StageListener = _silent
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        self.listener(name, StageEvent.START, detail)
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.seconds[name] = round(time.monotonic() - start, 3)
            self.listener(name, StageEvent.FAILED, "")
            raise
        self.seconds[name] = round(time.monotonic() - start, 3)
        self.listener(name, StageEvent.DONE, f"{self.seconds[name]:.1f} s")

    def skipped(self, name: str, why: str) -> None:
        self.seconds[name] = 0.0
        self.listener(name, StageEvent.SKIPPED, why)
