"""OpenSCAP results parser and findings on real oscap 1.3.7 output, the scan-copy helpers
(symlink rewrite, linux-base detection, scan_copy) and the content version matching.

The asset is `oscap xccdf eval --profile cis_level2_server` of ssg-debian 0.1.82's
ssg-debian13-ds.xml on a stock trixie minbase rootfs (`run_oscap_chroot`), gzipped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from goldsmith.errors import ToolMissingError
from goldsmith.model.records import Source, Status
from goldsmith.scan import ScanError, scan_copy
from goldsmith.scan.content import _matches
from goldsmith.scan.openscap import (
    CIS_L2_SERVER,
    OscapResult,
    RuleResult,
    RuleStatus,
    linux_base_installed,
    parse_xccdf_results,
    relativize_absolute_symlinks,
    run_oscap_chroot,
    to_findings,
)

ASSET = (
    Path(__file__).parent.parent
    / "assets"
    / "openscap"
    / "trixie-minbase-cis-l2-server.oscap-results.xml.gz"
)
NS = "http://checklists.nist.gov/xccdf/1.2"


@pytest.fixture(scope="module")
def real() -> OscapResult:
    return parse_xccdf_results(ASSET)


def test_real_results_identity(real: OscapResult) -> None:
    assert real.benchmark_id == "xccdf_org.ssgproject.content_benchmark_DEBIAN-13"
    assert real.benchmark_version == "0.1.82"
    assert real.product == "debian13"
    assert real.cis_reference_key == "cis-debian13"
    assert real.profile_id == CIS_L2_SERVER
    assert real.test_system == "cpe:/a:redhat:openscap:1.3.7"
    assert real.score is not None and 51.0 < real.score < 52.0


def test_real_results_counts_and_pass_rate(real: OscapResult) -> None:
    c = real.counts
    assert c[RuleStatus.PASS] == 232
    assert c[RuleStatus.FAIL] == 210
    assert c[RuleStatus.ERROR] == 0
    assert c[RuleStatus.UNKNOWN] == 6
    assert c[RuleStatus.NOTAPPLICABLE] == 70
    assert c[RuleStatus.NOTCHECKED] == 1
    assert c[RuleStatus.NOTSELECTED] == 258
    assert len(real.rules) == 777
    assert len(real.selected) == 777 - 258
    assert real.pass_rate == pytest.approx(232 / 442)


def test_real_rule_details(real: OscapResult) -> None:
    rules = {r.short_id: r for r in real.rules}
    root = rules["sshd_disable_root_login"]
    assert root.result is RuleStatus.FAIL  # Debian's default is prohibit-password
    assert root.title == "Disable SSH Root Login"
    assert root.severity == "medium"
    assert root.cis_ids == ("5.1.21",)  # CIS Controls ("/controls/") numbers not included
    assert rules["package_audit_installed"].result is RuleStatus.PASS  # dpkg probe sees it
    assert rules["package_aide_installed"].cis_ids == ("6.3.1",)
    assert rules["prefer_64bit_os"].result is RuleStatus.NOTSELECTED


def test_findings(real: OscapResult) -> None:
    findings = to_findings(real)
    # pass, fail, error, unknown and notapplicable; not notchecked or notselected
    assert len(findings) == 232 + 210 + 6 + 70
    by = {f.control: f for f in findings}
    f = by["openscap:sshd_disable_root_login"]
    assert f.status is Status.FAIL
    assert f.source is Source.OPENSCAP
    assert f.references == ("cis-debian13: 5.1.21",)
    assert f.evidence.expected == "Disable SSH Root Login"
    assert "0.1.82" in f.evidence.how
    assert by["openscap:service_auditd_enabled"].status is Status.ERROR  # unknown
    assert by["openscap:package_audit_installed"].status is Status.PASS


def _xccdf(results: str, extra_rule: str = "") -> str:
    return f"""<?xml version="1.0"?>
<Benchmark xmlns="{NS}" id="xccdf_org.ssgproject.content_benchmark_DEBIAN-12">
  <version>0.1.82</version>
  <Group id="g"><Rule id="r1" severity="high"><title>Rule  one</title>
    <reference href="https://www.cisecurity.org/cis-benchmarks/">1.2.3</reference>
    <reference href="https://www.cisecurity.org/controls/">4</reference></Rule>
    {extra_rule}</Group>
  <TestResult id="t" test-system="cpe:/a:redhat:openscap:1.3.7">
    <profile idref="p"/>{results}
  </TestResult>
</Benchmark>"""


def test_minimal_document(tmp_path: Path) -> None:
    p = tmp_path / "r.xml"
    p.write_text(
        _xccdf(
            '<rule-result idref="r1"><result>pass</result></rule-result>'
            '<rule-result idref="r2" severity="low"><result>error</result></rule-result>'
        )
    )
    r = parse_xccdf_results(p)
    assert r.product == "debian12"
    assert r.rules == (
        RuleResult("r1", RuleStatus.PASS, "high", "Rule one", ("1.2.3",)),
        RuleResult("r2", RuleStatus.ERROR, "low", "", ()),
    )
    assert r.pass_rate == 0.5


def test_no_applicable_rules_has_no_pass_rate(tmp_path: Path) -> None:
    p = tmp_path / "r.xml"
    p.write_text(_xccdf('<rule-result idref="r1"><result>notapplicable</result></rule-result>'))
    assert parse_xccdf_results(p).pass_rate is None


def test_unknown_result_value(tmp_path: Path) -> None:
    p = tmp_path / "r.xml"
    p.write_text(_xccdf('<rule-result idref="r1"><result>maybe</result></rule-result>'))
    with pytest.raises(ScanError, match="unknown XCCDF result 'maybe'"):
        parse_xccdf_results(p)


def test_no_test_result(tmp_path: Path) -> None:
    p = tmp_path / "r.xml"
    p.write_text(f'<Benchmark xmlns="{NS}" id="b"><version>1</version></Benchmark>')
    with pytest.raises(ScanError, match=r"no XCCDF 1\.2 TestResult"):
        parse_xccdf_results(p)


def test_entities_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "r.xml"
    p.write_text(
        '<?xml version="1.0"?><!DOCTYPE b [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        f'<Benchmark xmlns="{NS}" id="&b;"/>'
    )
    with pytest.raises(ScanError, match="not valid XML"):
        parse_xccdf_results(p)


def test_broken_xml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "r.xml"
    p.write_text("<Benchmark")
    with pytest.raises(ScanError, match="not valid XML"):
        parse_xccdf_results(p)
    with pytest.raises(ScanError, match="cannot read"):
        parse_xccdf_results(tmp_path / "absent.xml")


# scan copy helpers ---------------------------------------------------------------------------
def test_relativize_absolute_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd/system/auditd.service").write_text("image unit\n")
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    wants = root / "etc/systemd/system/multi-user.target.wants/auditd.service"
    wants.symlink_to("/usr/lib/systemd/system/auditd.service")
    (root / "etc/masked.service").symlink_to("/dev/null")
    (root / "etc/rel").symlink_to("../usr/lib")
    (root / "lib").symlink_to("usr/lib")  # merged-/usr: never descended into
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")  # dangling is fine
    (root / "toplevel").symlink_to("/usr/lib//./systemd")
    # "/lib/../x" is /usr/x in the image (lib -> usr/lib): not rewritable lexically
    (root / "etc/dotdot").symlink_to("/lib/../x")

    assert relativize_absolute_symlinks(root) == 3
    assert os.readlink(wants) == "../../../../usr/lib/systemd/system/auditd.service"
    assert wants.read_text() == "image unit\n"  # resolves inside the root, not on the host
    assert os.readlink(root / "etc/masked.service") == "/dev/null"
    assert os.readlink(root / "etc/rel") == "../usr/lib"
    assert os.readlink(root / "lib") == "usr/lib"
    assert os.readlink(root / "etc/localtime") == "../usr/share/zoneinfo/Etc/UTC"
    assert os.readlink(root / "toplevel") == "usr/lib/systemd"
    assert os.readlink(root / "etc/dotdot") == "/lib/../x"
    assert (root / "toplevel").resolve() == (root / "usr/lib/systemd").resolve()
    assert relativize_absolute_symlinks(root) == 0  # nothing absolute left


def _status(root: Path, text: str) -> None:
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(text)


def test_linux_base_installed(tmp_path: Path) -> None:
    _status(
        tmp_path,
        "Package: sudo\nStatus: install ok installed\n\n"
        "Package: linux-base\nStatus: install ok installed\nVersion: 4.12\n",
    )
    assert linux_base_installed(tmp_path)


def test_linux_base_removed_or_absent(tmp_path: Path) -> None:
    _status(tmp_path, "Package: linux-base\nStatus: deinstall ok config-files\n")
    assert not linux_base_installed(tmp_path)
    assert not linux_base_installed(tmp_path / "nothing-here")


def test_scan_copy_keeps_metadata_and_cleans_up(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/shadow").write_text("root:*:1::::::\n")
    (src / "etc/shadow").chmod(0o640)
    os.chown(src / "etc/shadow", 0, 42)
    (src / "etc/link").symlink_to("/etc/shadow")
    dest = tmp_path / "work" / "copy"
    with scan_copy(src, dest) as copy:
        st = (copy / "etc/shadow").lstat()
        assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == 42
        assert os.readlink(copy / "etc/link") == "/etc/shadow"
        (copy / "etc/shadow").write_text("changed\n")
    assert not dest.exists()
    assert (src / "etc/shadow").read_text() == "root:*:1::::::\n"


def test_scan_copy_refuses_an_existing_destination(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "dest").mkdir()
    with (
        pytest.raises(ScanError, match="already exists"),
        scan_copy(tmp_path / "src", tmp_path / "dest"),
    ):
        pass
    assert (tmp_path / "dest").is_dir()  # not ours: left alone
    with (
        pytest.raises(ScanError, match="not a directory"),
        scan_copy(tmp_path / "missing", tmp_path / "d2"),
    ):
        pass


def test_oscap_missing_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("goldsmith.scan.openscap.shutil.which", lambda _name: None)
    with pytest.raises(ToolMissingError, match="oscap") as info:
        run_oscap_chroot(tmp_path, tmp_path / "ds.xml", CIS_L2_SERVER, work_dir=tmp_path / "w")
    assert info.value.package == "openscap-scanner"


@pytest.mark.parametrize(
    ("full", "wanted", "ok"),
    [
        ("0.1.82-1", "0.1.82", True),
        ("0.1.82-1", "0.1.82-1", True),
        ("0.1.82-2", "0.1.82-1", False),
        ("0.1.820-1", "0.1.82", False),
        ("1:3.1.4-1", "3.1.4", True),
        ("3.1.4", "3.1.4", True),
        ("0.1.76-1", "0.1.82", False),
    ],
)
def test_content_version_matching(full: str, wanted: str, ok: bool) -> None:
    assert _matches(full, wanted) is ok


def test_hardened_default_image_results(real: OscapResult) -> None:
    """oscap-chroot, CIS L2 Server, on the hardened default rootfs (build of 2026-11-25)."""
    hardened = parse_xccdf_results(
        ASSET.with_name("nanoclaw-hardened-cis-l2-server.oscap-results.xml.gz")
    )
    counts = {str(k): v for k, v in hardened.counts.items() if v}
    assert counts == {
        "pass": 442,
        "fail": 33,
        "unknown": 10,
        "notapplicable": 33,
        "notchecked": 1,
        "notselected": 258,
    }
    assert hardened.pass_rate is not None and round(hardened.pass_rate * 100, 2) == 93.05
    assert real.pass_rate is not None and hardened.pass_rate > real.pass_rate


def _fake_oscap(tmp_path: Path, crashes: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install an ``oscap`` that kills itself with SIGSEGV ``crashes`` times, then writes real
    results; returns the work directory for the scan."""
    script = tmp_path / "bin" / "oscap"
    script.parent.mkdir()
    count = tmp_path / "calls"
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}\n"
        'echo "attempt $n on $OSCAP_PROBE_ROOT"; echo "probe noise $n" >&2\n'
        # what the probes leave in the copy: a later attempt must not see an earlier one's
        'if [ -e "$OSCAP_PROBE_ROOT/probe-tmp" ]; then echo "copy reused"; fi\n'
        'echo "$n" > "$OSCAP_PROBE_ROOT/probe-tmp"\n'
        f'if [ "$n" -le {crashes} ]; then kill -SEGV $$; fi\n'
        "while [ $# -gt 0 ]; do\n"
        f'  if [ "$1" = --results ]; then gzip -dc {ASSET} > "$2"; fi; shift\n'
        "done\n"
        "exit 2\n"
    )
    script.chmod(0o755)
    monkeypatch.setattr("goldsmith.scan.openscap.shutil.which", lambda _name: str(script))
    return tmp_path / "w"


def _rootfs(tmp_path: Path) -> Path:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("x\n")
    (tmp_path / "ds.xml").write_text("<ds/>\n")
    return rootfs


@pytest.mark.parametrize("keep_copy", [False, True])
def test_an_oscap_crash_is_run_again_on_a_fresh_copy_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_copy: bool
) -> None:
    work = _fake_oscap(tmp_path, 1, monkeypatch)
    work.mkdir()
    (work / "oscap-crash-2.log").write_text("from an earlier scan\n")
    result = run_oscap_chroot(
        _rootfs(tmp_path), tmp_path / "ds.xml", CIS_L2_SERVER, work_dir=work, keep_copy=keep_copy
    )
    assert "copy reused" not in (work / "oscap.log").read_text()
    if keep_copy:  # the second attempt's copy, kept
        assert (work / "oscap-rootfs" / "probe-tmp").read_text() == "2\n"
        assert (work / "oscap-rootfs" / "etc" / "hostname").is_file()
    assert (tmp_path / "calls").read_text().strip() == "2"
    assert result.crashes == ("killed by SIGSEGV, output in oscap-crash-1.log",)
    crash = (work / "oscap-crash-1.log").read_text()
    assert "attempt 1 on" in crash and "probe noise 1" in crash
    assert not (work / "oscap-crash-2.log").exists()  # a stale one from before is gone
    assert "attempt 2 on" in (work / "oscap.log").read_text()
    assert result.counts[RuleStatus.PASS] == 232  # the second attempt's results, parsed
    assert (work / "oscap-rootfs").exists() is keep_copy  # else the scan copy is removed


def test_an_oscap_that_keeps_crashing_is_an_error_with_its_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _fake_oscap(tmp_path, 5, monkeypatch)
    with pytest.raises(ScanError, match="killed by SIGSEGV on all 2 attempts") as info:
        run_oscap_chroot(_rootfs(tmp_path), tmp_path / "ds.xml", CIS_L2_SERVER, work_dir=work)
    assert "probe noise 2" in (info.value.stderr_tail or "")
    assert (tmp_path / "calls").read_text().strip() == "2"
    assert sorted(p.name for p in work.glob("oscap-crash-*.log")) == [
        "oscap-crash-1.log",
        "oscap-crash-2.log",
    ]
    assert not (work / "oscap-results.xml").exists()
    assert not (work / "oscap-rootfs").exists()
