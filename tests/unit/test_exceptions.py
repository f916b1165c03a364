"""Exceptions as code: match (goldsmith and scanner ids), stale, expired, the exceptions file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from goldsmith.errors import ProfileError
from goldsmith.model.profile import ExceptionEntry
from goldsmith.model.profile_loader import load_profile
from goldsmith.model.records import Evidence, Finding, Source, Status
from goldsmith.scan.exceptions import ExceptionState, apply_exceptions, load_exceptions

TODAY = dt.date(2026, 6, 1)


def finding(control: str, status: Status, source: Source = Source.GOLDSMITH) -> Finding:
    return Finding(control, status, Evidence("0", "1 (from /etc/sysctl.conf:3)", "sysctl"), source)


def exc(control: str, expires: dt.date = dt.date(2027, 1, 1)) -> ExceptionEntry:
    return ExceptionEntry(
        control=control,
        justification="rootful Docker turns forwarding on when it starts",
        compensating_controls=["nftables.docker-user"],
        owner="platform",
        approved_by="security",
        expires=expires,
    )


def test_a_failure_it_matches_becomes_excepted_keeping_its_evidence() -> None:
    found = [finding("sysctl.ip-forward", Status.FAIL), finding("sshd.port", Status.FAIL)]
    e = exc("sysctl.ip-forward")
    out = apply_exceptions(found, [e], today=TODAY)
    assert [f.status for f in out.findings] == [Status.EXCEPTED, Status.FAIL]
    assert out.findings[0].evidence == found[0].evidence
    assert out.applied == {0: e}
    assert out.reports[0].state is ExceptionState.ACTIVE
    assert out.reports[0].matched == ("sysctl.ip-forward",)


def test_scanner_rule_ids_match_in_both_openscap_forms() -> None:
    found = [
        finding("openscap:sysctl_net_ipv4_ip_forward", Status.FAIL, Source.OPENSCAP),
        finding("lynis:KRNL-6000", Status.FAIL, Source.LYNIS),
    ]
    out = apply_exceptions(
        found,
        [
            exc("openscap:xccdf_org.ssgproject.content_rule_sysctl_net_ipv4_ip_forward"),
            exc("lynis:KRNL-6000"),
        ],
        today=TODAY,
    )
    assert [f.status for f in out.findings] == [Status.EXCEPTED, Status.EXCEPTED]
    assert [r.state for r in out.reports] == [ExceptionState.ACTIVE] * 2


def test_an_exception_matching_nothing_failing_is_stale() -> None:
    found = [finding("sysctl.ip-forward", Status.PASS)]
    out = apply_exceptions(found, [exc("sysctl.ip-forward"), exc("kmod.overlay")], today=TODAY)
    assert [f.status for f in out.findings] == [Status.PASS]
    assert [r.state for r in out.reports] == [ExceptionState.STALE, ExceptionState.STALE]
    assert out.applied == {}


def test_an_exception_for_a_scanner_that_did_not_run_is_unchecked_not_stale() -> None:
    # a goldsmith-only scan (scan --host, the guest's own scan): Lynis and OpenSCAP absent
    only_goldsmith = [finding("sysctl.ip-forward", Status.FAIL)]
    excs = [exc("sysctl.ip-forward"), exc("openscap:sysctl_net_ipv4_ip_forward"), exc("lynis:X")]
    out = apply_exceptions(only_goldsmith, excs, today=TODAY)
    assert [r.state for r in out.reports] == [
        ExceptionState.ACTIVE,
        ExceptionState.UNCHECKED,
        ExceptionState.UNCHECKED,
    ]
    assert out.unchecked == out.reports[1:] and out.stale == ()
    # OpenSCAP ran (any of its findings): its rule passing, or absent, makes the entry stale;
    # Lynis still did not run
    with_oscap = [*only_goldsmith, finding("openscap:other_rule", Status.PASS, Source.OPENSCAP)]
    out = apply_exceptions(with_oscap, excs, today=TODAY)
    assert [r.state for r in out.reports][1:] == [ExceptionState.STALE, ExceptionState.UNCHECKED]
    # an expired exception is expired whether or not its scanner ran
    old = exc("lynis:X", expires=dt.date(2020, 1, 1))
    assert apply_exceptions(only_goldsmith, [old], today=TODAY).reports[0].state is (
        ExceptionState.EXPIRED
    )


def test_an_expired_exception_excepts_nothing_and_is_reported() -> None:
    found = [finding("sysctl.ip-forward", Status.FAIL)]
    e = exc("sysctl.ip-forward", expires=dt.date(2026, 5, 31))
    out = apply_exceptions(found, [e], today=TODAY)
    assert out.findings[0].status is Status.FAIL
    assert [r.state for r in out.expired] == [ExceptionState.EXPIRED]
    # the day it expires is still valid
    same_day = apply_exceptions(found, [exc("sysctl.ip-forward", TODAY)], today=TODAY)
    assert same_day.findings[0].status is Status.EXCEPTED


def test_errors_and_not_applicable_are_never_excepted() -> None:
    found = [finding("a.b", Status.ERROR), finding("c.d", Status.NOT_APPLICABLE)]
    out = apply_exceptions(found, [exc("a.b"), exc("c.d")], today=TODAY)
    assert [f.status for f in out.findings] == [Status.ERROR, Status.NOT_APPLICABLE]
    assert [r.state for r in out.reports] == [ExceptionState.STALE, ExceptionState.STALE]


def test_an_error_is_excepted_only_by_an_exception_that_says_it_covers_errors() -> None:
    found = [
        finding("openscap:service_auditd_enabled", Status.ERROR, Source.OPENSCAP),
        finding("openscap:service_cron_enabled", Status.ERROR, Source.OPENSCAP),
        finding("openscap:service_rsyslog_enabled", Status.NOT_APPLICABLE, Source.OPENSCAP),
    ]
    covering = exc("openscap:service_auditd_enabled").model_copy(update={"covers_errors": True})
    plain = exc("openscap:service_cron_enabled")
    na = exc("openscap:service_rsyslog_enabled").model_copy(update={"covers_errors": True})
    out = apply_exceptions(found, [covering, plain, na], today=TODAY)
    assert [f.status for f in out.findings] == [
        Status.EXCEPTED,
        Status.ERROR,
        Status.NOT_APPLICABLE,
    ]
    assert [r.state for r in out.reports] == [
        ExceptionState.ACTIVE,
        ExceptionState.STALE,
        ExceptionState.STALE,
    ]
    # expired, it excepts nothing and the error it names is reported as still there
    old = covering.model_copy(update={"expires": dt.date(2026, 1, 1)})
    gone = apply_exceptions(found[:1], [old], today=TODAY)
    assert gone.findings[0].status is Status.ERROR
    assert gone.reports[0].matched == ("openscap:service_auditd_enabled",)


@pytest.mark.parametrize("bad", ["Sysctl ip forward", "nessus:123", "lynis:", ""])
def test_exception_ids_are_validated(bad: str) -> None:
    with pytest.raises(ValidationError):
        exc(bad)


PROFILE = """\
name: t
exceptions:
  - control: sysctl.ip-forward
    justification: rootful Docker sets it at start
    owner: platform
    approved_by: security
    expires: 2027-01-01
exceptions_file: {file}
"""


def test_exceptions_file_is_read_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "waivers").mkdir()
    (tmp_path / "waivers" / "x.yaml").write_text(
        "exceptions:\n"
        "  - control: lynis:SSH-7408\n"
        "    justification: the agent's port forwarding is needed for ...\n"
        "    owner: platform\n"
        "    approved_by: security\n"
        "    expires: 2027-01-01\n"
    )
    p = tmp_path / "p.yaml"
    p.write_text(PROFILE.format(file="waivers/x.yaml"))
    got = load_exceptions(load_profile(str(p)))
    assert [e.control for e in got] == ["sysctl.ip-forward", "lynis:SSH-7408"]


def test_a_bad_exceptions_file_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("exceptions:\n  - control: a.b\n    owner: me\n")
    p = tmp_path / "p.yaml"
    p.write_text(PROFILE.format(file="x.yaml"))
    with pytest.raises(ProfileError) as info:
        load_exceptions(load_profile(str(p)))
    assert "x.yaml" in info.value.message and "exceptions.0" in info.value.message


def test_a_missing_exceptions_file_is_a_profile_error(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(PROFILE.format(file="nope.yaml"))
    with pytest.raises(ProfileError, match=r"nope\.yaml"):
        load_exceptions(load_profile(str(p)))
