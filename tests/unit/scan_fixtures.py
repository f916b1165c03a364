"""A small, fixed scan report from all three sources, for merge, format and gate tests."""

from __future__ import annotations

import datetime as dt
import uuid

from goldsmith.model.profile import ExceptionEntry
from goldsmith.model.records import Evidence, Finding, Source, Status
from goldsmith.scan.exceptions import apply_exceptions
from goldsmith.scan.lynis import LynisItem, LynisResult
from goldsmith.scan.merge import ScannerRun, ScanReport, merge
from goldsmith.scan.openscap import OscapResult, RuleResult, RuleStatus

CREATED = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
SCAN_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def gfind(control: str, status: Status, *cis: str) -> Finding:
    return Finding(
        control,
        status,
        Evidence(f"{control} holds", f"observed {status.value}", f"read /etc/{control}"),
        Source.GOLDSMITH,
        (*(f"cis-debian13: {c}" for c in cis), "soc2: CC6.1"),
    )


def ofind(rule: str, status: Status, *cis: str) -> Finding:
    return Finding(
        f"openscap:{rule}",
        status,
        Evidence(rule.replace("_", " "), f"XCCDF result {status.value}", "OpenSCAP test"),
        Source.OPENSCAP,
        tuple(f"cis-debian13: {c}" for c in cis),
    )


LYNIS = LynisResult(
    lynis_version="3.1.4",
    hardening_index=67,
    tests_performed=250,
    warnings=(LynisItem("FIRE-4512", "iptables module(s) loaded, but no rules active"),),
    suggestions=(LynisItem("DEB-0880", "Install fail2ban"),),
    mode="chroot",
)


def _rule(short: str, status: RuleStatus, title: str, cis: str) -> RuleResult:
    return RuleResult(f"xccdf_org.ssgproject.content_rule_{short}", status, "medium", title, (cis,))


OSCAP = OscapResult(
    benchmark_id="xccdf_org.ssgproject.content_benchmark_DEBIAN-13",
    benchmark_version="0.1.82",
    profile_id="xccdf_org.ssgproject.content_profile_cis_level2_server",
    rules=(
        _rule("sshd_disable_root_login", RuleStatus.FAIL, "Disable SSH Root Login", "5.1.21"),
        _rule("sysctl_kernel_randomize_va_space", RuleStatus.PASS, "ASLR", "1.5.2"),
        _rule("grub2_password", RuleStatus.FAIL, "Set Boot Loader Password", "1.4.1"),
        _rule("partition_for_home", RuleStatus.NOTAPPLICABLE, "/home partition", "1.1.2.3.1"),
    ),
    product="debian13",
)


def findings() -> list[Finding]:
    return [
        gfind("sshd.permit-root-login", Status.PASS, "5.1.21"),
        gfind("sysctl.randomize-va-space", Status.PASS, "1.5.2"),
        gfind("sysctl.ip-forward", Status.FAIL, "3.3.1.1"),
        gfind("grub.password", Status.FAIL, "1.4.1"),
        gfind("journald.file-access", Status.NOT_APPLICABLE, "6.1.1.1.3"),
        gfind("auditd.rules-loaded", Status.ERROR, "6.2.3.1"),
        ofind("sshd_disable_root_login", Status.FAIL, "5.1.21"),
        ofind("sysctl_kernel_randomize_va_space", Status.PASS, "1.5.2"),
        ofind("grub2_password", Status.FAIL, "1.4.1"),
        ofind("partition_for_home", Status.NOT_APPLICABLE, "1.1.2.3.1"),
        Finding(
            "lynis:FIRE-4512",
            Status.FAIL,
            Evidence("no Lynis warning from FIRE-4512", "iptables module(s) loaded", "Lynis"),
            Source.LYNIS,
        ),
    ]


def exception(control: str, expires: dt.date = dt.date(2027, 1, 1)) -> ExceptionEntry:
    return ExceptionEntry(
        control=control,
        justification="rootful Docker sets ip_forward when it starts",
        compensating_controls=["nftables.docker-user", "sysctl.ipv6-all-forwarding"],
        owner="platform-team",
        approved_by="security-team",
        expires=expires,
    )


def report(exceptions: list[ExceptionEntry] | None = None) -> ScanReport:
    found = findings()
    excs = (
        exceptions
        if exceptions is not None
        else [
            exception("sysctl.ip-forward"),
            exception("kmod.overlay"),
            exception("openscap:grub2_password", dt.date(2026, 5, 1)),
        ]
    )
    return merge(
        found,
        apply_exceptions(found, excs, today=CREATED.date()),
        report_id=SCAN_ID,
        created=CREATED,
        today=CREATED.date(),
        target_kind="rootfs",
        target="/var/tmp/rootfs",
        profile_name="nanoclaw-debian13",
        profile_version="0.1.0",
        profile_digest="ab" * 32,
        scanners=[
            ScannerRun(Source.GOLDSMITH, True, seconds=1.5),
            ScannerRun(Source.LYNIS, True, reason="chroot", seconds=60.0),
            ScannerRun(Source.OPENSCAP, True, reason="oscap-chroot", seconds=35.0),
        ],
        lynis=LYNIS,
        openscap=OSCAP,
    )
