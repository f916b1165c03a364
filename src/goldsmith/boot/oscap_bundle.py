"""A self-contained ``oscap`` for the booted image: the build host's scanner, carried in.

The gold image has no OpenSCAP (a scanner is not something an agent host needs), and the
boot test installs nothing into the booted copy with apt. Instead it carries the same
``oscap`` that scanned the rootfs (``oscap-chroot``), so the two results are from one scanner
version: the binary, every shared library it needs except glibc's own (the guest's newer glibc
runs them), OpenSCAP's schemas, XSLT and CPE files, the pinned SCAP datastream and an apt
configuration for the dpkginfo probe. In the guest it runs through the guest's dynamic loader
with ``--library-path``, so the carried libraries apply to ``oscap`` only and never leak into
a process it starts.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from goldsmith.errors import ToolMissingError
from goldsmith.scan import ScanError

__all__ = [
    "GLIBC_SONAMES",
    "OscapBundle",
    "bundle_oscap",
    "guest_command",
    "parse_ldd",
]

#: glibc's own libraries: the guest's (a newer glibc runs binaries built for an older one)
GLIBC_SONAMES = frozenset(
    {
        "linux-vdso.so.1",
        "ld-linux-x86-64.so.2",
        "libc.so.6",
        "libm.so.6",
        "libmvec.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libutil.so.1",
        "libBrokenLocale.so.1",
    }
)
SHARE = Path("/usr/share/openscap")
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-f]+\)\s*$")
_LDD_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


@dataclass(frozen=True)
class OscapBundle:
    data: bytes  # a gzip-compressed tar, members under ``oscap/``
    libraries: tuple[str, ...]  # sonames carried in
    oscap_version: str


def parse_ldd(text: str) -> dict[str, Path]:
    """``ldd`` output -> soname -> resolved path (vdso and the loader have no ``=>`` path).

    A library ldd cannot find is an error: a bundle without it would fail in the guest.
    """
    out: dict[str, Path] = {}
    for line in text.splitlines():
        if m := _LDD_NOT_FOUND.match(line):
            raise ScanError(f"ldd: {m.group(1)} not found for oscap on this host")
        if m := _LDD_LINE.match(line):
            out[m.group(1)] = Path(m.group(2))
    return out


def carried_libraries(resolved: dict[str, Path]) -> dict[str, Path]:
    """The libraries to carry: everything but glibc's own."""
    return {name: path for name, path in sorted(resolved.items()) if name not in GLIBC_SONAMES}


def bundle_oscap(datastream: Path, oscap: str | None = None) -> OscapBundle:
    """Pack the host's oscap, its non-glibc libraries, /usr/share/openscap and ``datastream``."""
    binary = oscap or shutil.which("oscap")
    if binary is None:
        raise ToolMissingError("oscap", "openscap-scanner")
    if not SHARE.is_dir():
        raise ToolMissingError(str(SHARE), "openscap-common")
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=60)
    if ldd.returncode != 0:
        raise ScanError(f"ldd {binary} failed: {ldd.stderr.strip()}")
    libs = carried_libraries(parse_ldd(ldd.stdout))
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    first = version.stdout.splitlines()[0] if version.stdout else "unknown"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        _add(tar, Path(binary), "oscap/bin/oscap")
        for name, path in libs.items():
            _add(tar, path, f"oscap/lib/{name}")  # dereferenced: the soname is the file
        tar.add(SHARE, arcname="oscap/share/openscap", filter=_root_owned)
        _add(tar, datastream, f"oscap/{datastream.name}")
        _add_text(tar, "oscap/apt.conf", apt_config("/var/lib/goldsmith-boottest/oscap"))
    return OscapBundle(buf.getvalue(), tuple(libs), first.strip())


def apt_config(base: str) -> str:
    """apt settings for the dpkginfo probe: its cache in ``base``, nothing else read.

    Without them the probe reads the image's apt configuration, whose package cache the build
    removed, and every package looks absent.
    """
    return (
        f'Dir::Cache "{base}/apt-cache";\n'
        'Dir::Cache::pkgcache "pkgcache.bin";\n'
        'Dir::Cache::srcpkgcache "srcpkgcache.bin";\n'
        f'Dir::Etc::parts "{base}/apt.conf.d";\n'
        'Dir::Etc::main "/dev/null";\n'
    )


def guest_command(base: str, profile_id: str, datastream_name: str) -> str:
    """The shell line that runs the carried oscap in the guest (as root) from ``base``."""
    env = " ".join(
        [
            f"OSCAP_SCHEMA_PATH={base}/share/openscap/schemas",
            f"OSCAP_XSLT_PATH={base}/share/openscap/xsl",
            f"OSCAP_CPE_PATH={base}/share/openscap/cpe",
            f"APT_CONFIG={base}/apt.conf",
        ]
    )
    loader = "/lib64/ld-linux-x86-64.so.2"
    return (
        f"mkdir -p {base}/apt-cache {base}/apt.conf.d && cd {base} && "
        f"env {env} {loader} --library-path {base}/lib {base}/bin/oscap xccdf eval "
        f"--profile {profile_id} --results {base}/results.xml --results-arf {base}/arf.xml "
        f"--report {base}/report.html {base}/{datastream_name}"
    )


def _root_owned(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    info = tar.gettarinfo(str(path.resolve()), arcname=name)
    _root_owned(info)
    with path.resolve().open("rb") as f:
        tar.addfile(info, f)


def _add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(_root_owned(info), io.BytesIO(data))
