"""Scan output formats: an enum mapped to one class per format (as pip-audit does)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import assert_never

from goldsmith.scan.formats.interface import ScanFormat
from goldsmith.scan.merge import ScanReport

__all__ = ["OutputFormat", "ScanFormat", "write_reports"]


class OutputFormat(StrEnum):
    JSON = "json"
    JUNIT = "junit"
    SARIF = "sarif"

    def to_format(self) -> ScanFormat:
        from goldsmith.scan.formats.json import JsonFormat
        from goldsmith.scan.formats.junit import JunitFormat
        from goldsmith.scan.formats.sarif import SarifFormat

        match self:
            case OutputFormat.JSON:
                return JsonFormat()
            case OutputFormat.JUNIT:
                return JunitFormat()
            case OutputFormat.SARIF:
                return SarifFormat()
            case _:
                assert_never(self)


def write_reports(
    report: ScanReport, out_dir: Path, formats: tuple[OutputFormat, ...] = tuple(OutputFormat)
) -> list[Path]:
    """Render ``report`` in each format into ``out_dir``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in formats:
        impl = fmt.to_format()
        path = out_dir / impl.filename
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(impl.render(report), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
