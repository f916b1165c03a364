"""The oscap carried into the booted image: which libraries go, how it is started."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from goldsmith.boot.oscap_bundle import (
    GLIBC_SONAMES,
    apt_config,
    bundle_oscap,
    carried_libraries,
    guest_command,
    parse_ldd,
)
from goldsmith.scan import ScanError

# ldd /usr/bin/oscap on the Debian 12 build host (shortened)
LDD = """\
\tlinux-vdso.so.1 (0x00007ffd6b1f2000)
\tlibopenscap.so.25 => /lib/x86_64-linux-gnu/libopenscap.so.25 (0x00007f80cbc00000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f80cbe54000)
\tlibxml2.so.2 => /lib/x86_64-linux-gnu/libxml2.so.2 (0x00007f80cba1d000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f80cb458000)
\tlibresolv.so.2 => /lib/x86_64-linux-gnu/libresolv.so.2 (0x00007f80c7efb000)
\tlibapt-pkg.so.6.0 => /lib/x86_64-linux-gnu/libapt-pkg.so.6.0 (0x00007f80cb200000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f80cc1d0000)
"""


def test_ldd_output_is_parsed_and_glibc_stays_behind() -> None:
    resolved = parse_ldd(LDD)
    assert resolved["libxml2.so.2"] == Path("/lib/x86_64-linux-gnu/libxml2.so.2")
    assert "linux-vdso.so.1" not in resolved  # no path: nothing to carry
    carried = carried_libraries(resolved)
    assert set(carried) == {"libopenscap.so.25", "libxml2.so.2", "libapt-pkg.so.6.0"}
    assert not set(carried) & GLIBC_SONAMES


def test_a_library_ldd_cannot_find_is_an_error() -> None:
    with pytest.raises(ScanError, match=r"libfoo\.so\.1 not found"):
        parse_ldd(LDD + "\tlibfoo.so.1 => not found\n")


def test_guest_command_confines_the_carried_libraries_to_oscap() -> None:
    cmd = guest_command("/var/lib/x/oscap", "xccdf_p", "ssg-debian13-ds.xml")
    # through the guest's loader: the library path is not inherited by what oscap starts
    assert "/lib64/ld-linux-x86-64.so.2 --library-path /var/lib/x/oscap/lib " in cmd
    assert "LD_LIBRARY_PATH" not in cmd
    assert "APT_CONFIG=/var/lib/x/oscap/apt.conf" in cmd
    assert cmd.endswith("/var/lib/x/oscap/ssg-debian13-ds.xml")
    assert "--profile xccdf_p " in cmd


def test_apt_config_keeps_the_probe_cache_out_of_the_image() -> None:
    text = apt_config("/var/lib/x/oscap")
    assert 'Dir::Cache "/var/lib/x/oscap/apt-cache";' in text
    assert 'Dir::Etc::main "/dev/null";' in text


@pytest.mark.skipif(shutil.which("oscap") is None, reason="needs openscap-scanner")
def test_bundle_of_the_host_oscap(tmp_path: Path) -> None:
    ds = tmp_path / "ssg-test-ds.xml"
    ds.write_text("<ds/>")
    bundle = bundle_oscap(ds)
    with tarfile.open(fileobj=io.BytesIO(bundle.data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "oscap/bin/oscap" in members and members["oscap/bin/oscap"].mode & 0o111
    assert "oscap/ssg-test-ds.xml" in members and "oscap/apt.conf" in members
    assert any(n.startswith("oscap/share/openscap/schemas/") for n in members)
    assert "oscap/lib/libc.so.6" not in members
    assert all(f"oscap/lib/{lib}" in members for lib in bundle.libraries)
    assert any(lib.startswith("libopenscap.so") for lib in bundle.libraries)
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert bundle.oscap_version.startswith("OpenSCAP")
