"""The one result model: CIS keys, disagreements, counts per section, failures not excepted."""

from __future__ import annotations

from scan_fixtures import findings, gfind, ofind, report

from goldsmith.model.records import Source, Status
from goldsmith.scan.merge import cis_ids, disagreements


def test_cis_ids_come_from_the_debian13_references_only() -> None:
    f = gfind("x.y", Status.PASS, "5.1.21", "5.1.21", "5.1.3")
    assert cis_ids(f) == ("5.1.21", "5.1.3")
    assert cis_ids(ofind("r", Status.PASS)) == ()


def test_a_pass_against_a_fail_on_the_same_cis_id_is_a_disagreement() -> None:
    got = disagreements(findings())
    assert [(d.cis, d.goldsmith, d.openscap) for d in got] == [("5.1.21", "pass", "fail")]
    assert [s.control for s in got[0].openscap_findings] == ["openscap:sshd_disable_root_login"]


def test_agreement_and_one_sided_ids_are_not_disagreements() -> None:
    both_fail = [gfind("g", Status.FAIL, "1.4.1"), ofind("o", Status.FAIL, "1.4.1")]
    one_side = [gfind("g", Status.FAIL, "3.3.1.1")]
    na_vs_fail = [gfind("g", Status.NOT_APPLICABLE, "6.1"), ofind("o", Status.FAIL, "6.1")]
    assert disagreements(both_fail + one_side + na_vs_fail) == []


def test_any_failure_on_a_side_makes_its_verdict_fail() -> None:
    got = disagreements(
        [
            gfind("a", Status.PASS, "5.1.7"),
            gfind("b", Status.FAIL, "5.1.7"),
            ofind("c", Status.PASS, "5.1.7"),
            ofind("d", Status.PASS, "5.1.10"),
            gfind("e", Status.PASS, "5.1.10"),
        ]
    )
    assert [(d.cis, d.goldsmith, d.openscap) for d in got] == [("5.1.7", "fail", "pass")]


def test_disagreements_are_judged_before_exceptions() -> None:
    # grub.password and openscap:grub2_password both fail; excepting one side changes nothing
    r = report()
    assert [d.cis for d in r.disagreements] == ["5.1.21"]


def test_counts_sections_and_failures_not_excepted() -> None:
    r = report()
    c = r.counts()
    # ip-forward excepted; grub.password, openscap sshd + grub2 (expired waiver), lynis fail
    assert c[Status.EXCEPTED] == 1 and c[Status.FAIL] == 4 and c[Status.ERROR] == 1
    assert r.counts(Source.LYNIS)[Status.FAIL] == 1
    # 4 failed + 1 error + 1 expired exception
    assert r.failures_not_excepted == 6 and not r.compliant
    by = {s.section: s.counts for s in r.sections()}
    assert list(by) == ["1", "3", "5", "6", "-"]
    assert by["3"][Status.EXCEPTED] == 1 and by["5"][Status.FAIL] == 1
    assert by["-"][Status.FAIL] == 1  # the unmapped Lynis warning
    item = next(i for i in r.items if i.finding.control == "sysctl.ip-forward")
    assert item.original is Status.FAIL and item.exception is not None


def test_a_clean_report_is_compliant() -> None:
    r = report([])
    assert not r.compliant
    clean = [gfind("a", Status.PASS, "1.1"), gfind("b", Status.NOT_APPLICABLE)]
    from scan_fixtures import CREATED, SCAN_ID

    from goldsmith.scan.exceptions import apply_exceptions
    from goldsmith.scan.merge import merge

    ok = merge(
        clean,
        apply_exceptions(clean, [], today=CREATED.date()),
        report_id=SCAN_ID,
        created=CREATED,
        today=CREATED.date(),
        target_kind="host",
        target="/",
        profile_name="p",
        profile_version="1",
        profile_digest="0",
    )
    assert ok.compliant and ok.failures_not_excepted == 0
