"""The seam every scan output format implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from goldsmith.scan.merge import ScanReport


class ScanFormat(ABC):
    #: the file name ``goldsmith scan --out DIR`` writes this format to
    filename: ClassVar[str]

    @abstractmethod
    def render(self, report: ScanReport) -> str:
        """The whole document as text. Pure: everything it shows comes from ``report``."""
