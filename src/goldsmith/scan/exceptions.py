"""Exceptions as code: waivers from the profile (and a file it names) applied to findings.

An exception names a goldsmith control id or a scanner rule id (``lynis:SSH-7408``,
``openscap:<rule>``). Against a list of findings each exception is one of:

* ``active``: unexpired and it matched at least one failing finding; those findings become
  ``excepted`` (their evidence kept as it was, the exception attached);
* ``stale``: unexpired but nothing failing matched it (the control passes now, or the id is
  wrong): reported so it can be removed, it does not fail anything;
* ``unchecked``: unexpired, and it names a scanner that has no finding in this scan (Lynis
  or OpenSCAP did not run: ``scan --host``, ``--no-openscap``, the guest's own scan in the
  boot test), so this scan cannot tell whether it is still needed;
* ``expired``: ``expires`` is before today. It excepts nothing, and the expired exception
  itself counts as a failure (a waiver nobody renewed must be looked at).

Only ``fail`` findings are excepted by default: an ``error`` means the check could not run,
and a waiver for a result nobody saw would hide that. An exception with ``covers_errors: true``
also excepts an error; it is meant for a check a scanner cannot evaluate where it runs (an
OpenSCAP probe that does not work on an offline rootfs), and its justification says where the
setting is evaluated instead. The excepted finding keeps its original status in the report.
``today`` is always passed in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from goldsmith.errors import ProfileError
from goldsmith.model.profile import ExceptionEntry
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.model.records import Finding, Status

__all__ = [
    "Excepted",
    "ExceptionReport",
    "ExceptionState",
    "apply_exceptions",
    "exception_key",
    "load_exceptions",
]

_OSCAP_RULE_PREFIX = "xccdf_org.ssgproject.content_rule_"
_SHIPPED_PREFIX = "goldsmith:"


class ExceptionState(StrEnum):
    ACTIVE = "active"
    STALE = "stale"
    UNCHECKED = "unchecked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ExceptionReport:
    exception: ExceptionEntry
    state: ExceptionState
    #: ids of the findings it matched (failing ones for active/expired)
    matched: tuple[str, ...] = ()


@dataclass(frozen=True)
class Excepted:
    """The findings after exceptions, and what each exception did."""

    findings: tuple[Finding, ...]
    #: finding index -> the exception that excepted it
    applied: dict[int, ExceptionEntry]
    reports: tuple[ExceptionReport, ...]

    @property
    def expired(self) -> tuple[ExceptionReport, ...]:
        return tuple(r for r in self.reports if r.state is ExceptionState.EXPIRED)

    @property
    def stale(self) -> tuple[ExceptionReport, ...]:
        return tuple(r for r in self.reports if r.state is ExceptionState.STALE)

    @property
    def unchecked(self) -> tuple[ExceptionReport, ...]:
        return tuple(r for r in self.reports if r.state is ExceptionState.UNCHECKED)


def exception_key(control: str) -> str:
    """The form findings use: ``openscap:xccdf_org.ssgproject.content_rule_x`` -> ``openscap:x``."""
    if control.startswith("openscap:"):
        return "openscap:" + control.removeprefix("openscap:").removeprefix(_OSCAP_RULE_PREFIX)
    return control


def scanner_of(key: str) -> str | None:
    """The third-party scanner an exception key names (``openscap``, ``lynis``), or None for a
    goldsmith control id."""
    prefix, sep, _ = key.partition(":")
    return prefix if sep and prefix in ("openscap", "lynis") else None


def apply_exceptions(
    findings: Sequence[Finding], exceptions: Sequence[ExceptionEntry], *, today: dt.date
) -> Excepted:
    """Except the failing findings unexpired exceptions match; classify every exception."""
    by_key: dict[str, ExceptionEntry] = {}
    expired: list[ExceptionEntry] = []
    for e in exceptions:
        if e.expires < today:
            expired.append(e)
        else:
            by_key.setdefault(exception_key(e.control), e)  # the first one listed wins
    out: list[Finding] = []
    applied: dict[int, ExceptionEntry] = {}
    matched: dict[str, list[str]] = {}
    for i, f in enumerate(findings):
        hit = by_key.get(f.control)
        if hit is not None and (
            f.status is Status.FAIL or (f.status is Status.ERROR and hit.covers_errors)
        ):
            out.append(dataclasses.replace(f, status=Status.EXCEPTED))
            applied[i] = hit
            matched.setdefault(exception_key(hit.control), []).append(f.control)
        else:
            out.append(f)
    failing = {f.control for f in findings if f.status in (Status.FAIL, Status.ERROR)}
    ran = {scanner_of(f.control) for f in findings}  # None: goldsmith's own checks
    reports: list[ExceptionReport] = []
    for e in exceptions:
        key = exception_key(e.control)
        if e in expired:
            still = (key,) if key in failing else ()
            reports.append(ExceptionReport(e, ExceptionState.EXPIRED, still))
        elif by_key.get(key) is e and key in matched:
            reports.append(ExceptionReport(e, ExceptionState.ACTIVE, tuple(matched[key])))
        elif scanner_of(key) not in ran:
            reports.append(ExceptionReport(e, ExceptionState.UNCHECKED))
        else:
            reports.append(ExceptionReport(e, ExceptionState.STALE))
    return Excepted(tuple(out), applied, tuple(reports))


# loading ---------------------------------------------------------------------------------------
class _ExceptionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    exceptions: list[ExceptionEntry] = []


def load_exceptions(loaded: LoadedProfile) -> list[ExceptionEntry]:
    """The profile's exceptions followed by those of its ``exceptions_file`` (if it names one).

    The file is read relative to the profile file that names it; a shipped profile's file is
    read from the package. Raises :class:`ProfileError` naming the file for a bad entry.
    """
    profile = loaded.profile
    if profile.exceptions_file is None:
        return list(profile.exceptions)
    at = loaded.position("exceptions_file")
    origin = at[0] if at is not None else (loaded.sources[-1] if loaded.sources else "")
    name, text = _read_relative(origin, profile.exceptions_file)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"not valid YAML: {exc}", file=name) from None
    try:
        extra = _ExceptionsFile.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ProfileError(first["msg"], file=name, key=key) from None
    return [*profile.exceptions, *extra.exceptions]


def _read_relative(origin: str, ref: str) -> tuple[str, str]:
    if origin.startswith(_SHIPPED_PREFIX):
        rel = Path(origin.removeprefix(_SHIPPED_PREFIX)).parent / ref
        name = _SHIPPED_PREFIX + rel.as_posix()
        node = resources.files("goldsmith").joinpath(*rel.parts)
        if not node.is_file():
            raise ProfileError("exceptions file not found", file=name, key="exceptions_file")
        return name, node.read_text("utf-8")
    path = Path(origin).parent / ref if origin else Path(ref)
    try:
        return str(path), path.read_text("utf-8")
    except OSError as exc:
        raise ProfileError(
            f"cannot read exceptions file: {exc.strerror}",
            file=str(path),
            key="exceptions_file",
            hint="exceptions_file is read relative to the profile file that names it",
        ) from None
