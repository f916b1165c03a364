"""Base digest, the mmdebstrap command line, the base cache and unpacking, with a fake
mmdebstrap on PATH (the real one runs in tests/integration/test_bootstrap.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from goldsmith.build import bootstrap, cache
from goldsmith.build.bootstrap import (
    BaseArtifact,
    base_digest,
    bootstrap_base,
    mmdebstrap_argv,
    nodoc_config,
    source_lines,
    unpack_base,
)
from goldsmith.errors import BuildError, ToolMissingError
from goldsmith.model.profile import Base, Distribution, Packages, Profile

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# A stand-in for mmdebstrap: records its argv and environment, then writes a small tar to the
# output path (the argument after the suite), or fails when FAKE_FAIL is set in its dir.
FAKE = r"""#!/bin/sh
here="$(dirname "$0")"
if [ "$1" = "--version" ]; then echo "mmdebstrap 9.9.9"; exit 0; fi
echo "run" >> "$here/runs"
printf '%s\n' "$@" > "$here/argv"
env > "$here/env"
if [ -e "$here/FAKE_FAIL" ]; then echo "E: cannot download packages" >&2; exit 1; fi
out=""
prev=""
for a in "$@"; do
  case "$a" in -*) ;; *) if [ -n "$prev" ] && [ -z "$out" ]; then out="$a"; fi; prev="$a";; esac
done
mkdir -p "$TMPDIR/root/etc"
echo base > "$TMPDIR/root/etc/marker"
tar -C "$TMPDIR/root" -cf "$out" .
"""


def _profile(**base: object) -> Profile:
    return Profile(name="t", base=Base.model_validate(base))


@pytest.fixture
def fake_mmdebstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "mmdebstrap"
    exe.write_text(FAKE)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin")
    if not Path(KEYRING).is_file():
        pytest.skip(f"{KEYRING} missing (debian-archive-keyring)")
    return bindir


# --- digest and command line -------------------------------------------------------------------


def test_digest_is_stable_and_covers_the_base_inputs() -> None:
    p = _profile()
    assert base_digest(p) == base_digest(_profile())
    assert len(base_digest(p)) == 64
    assert base_digest(_profile(suite="forky")) != base_digest(p)
    assert base_digest(_profile(include=["sudo"])) != base_digest(p)
    assert base_digest(_profile(source_date_epoch=1700000000)) != base_digest(p)
    no_docs = Profile(name="t", packages=Packages(exclude_docs=False))
    assert base_digest(no_docs) != base_digest(p)
    # what is installed after the base does not change the base
    later = Profile(name="other", packages=Packages(include=["nodejs"], purge=["telnet"]))
    assert base_digest(later) == base_digest(p)


def test_digest_changes_with_the_recipe_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = base_digest(_profile())
    monkeypatch.setattr(bootstrap, "RECIPE_VERSION", bootstrap.RECIPE_VERSION + 1)
    assert base_digest(_profile()) != before


def test_sources_include_updates_and_security() -> None:
    p = _profile(components=["main", "contrib"])
    assert source_lines(p) == [
        "deb http://deb.debian.org/debian trixie main contrib",
        "deb http://deb.debian.org/debian trixie-updates main contrib",
        "deb http://deb.debian.org/debian-security trixie-security main contrib",
    ]
    ubuntu = _profile(
        distribution="ubuntu",
        suite="noble",
        mirror="http://archive.ubuntu.com/ubuntu",
        security_mirror="http://security.ubuntu.com/ubuntu",
        extra_suites=["noble-updates"],
    )
    assert source_lines(ubuntu)[-1] == "deb http://security.ubuntu.com/ubuntu noble-security main"
    assert len(source_lines(_profile(security_mirror=None, extra_suites=[]))) == 1


def test_argv_shape() -> None:
    p = _profile(include=["sudo", "linux-image-amd64"], variant="minbase")
    argv = mmdebstrap_argv(p, Path("/c/out.tar"), keyring=KEYRING)
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv and "--architectures=amd64" in argv
    assert "--components=main" in argv and f"--keyring={KEYRING}" in argv
    assert "--skip=cleanup/apt/lists" in argv
    # kernel first and not twice
    assert "--include=linux-image-amd64,sudo" in argv
    assert argv[-5:] == ["trixie", "/c/out.tar", *source_lines(p)]


def test_nodoc_filter_rules() -> None:
    argv = mmdebstrap_argv(_profile(), Path("/o.tar"), keyring=KEYRING)
    rules = [a.removeprefix("--dpkgopt=") for a in argv if a.startswith("--dpkgopt=")]
    assert rules == nodoc_config().splitlines()
    # later rules win in dpkg: each include must follow the exclude it carves out of
    assert rules.index("path-include=/usr/share/doc/*/copyright") > rules.index(
        "path-exclude=/usr/share/doc/*"
    )
    for d in ("man", "info", "locale", "lintian", "linda"):
        assert f"path-exclude=/usr/share/{d}/*" in rules
    off = Profile(name="t", packages=Packages(exclude_docs=False))
    assert not [a for a in mmdebstrap_argv(off, Path("/o.tar"), keyring=KEYRING) if "dpkgopt" in a]


# --- cache ----------------------------------------------------------------------------------


def test_bootstrap_then_cache_hit(tmp_path: Path, fake_mmdebstrap: Path) -> None:
    p = _profile(source_date_epoch=1700000000)
    first = bootstrap_base(p, tmp_path / "cache")
    assert not first.cached
    assert first.mmdebstrap_version == "9.9.9"
    assert first.tarball == tmp_path / "cache/base" / f"{base_digest(p)}.tar"
    assert first.tarball.is_file()
    env = dict(
        line.split("=", 1)
        for line in (fake_mmdebstrap / "env").read_text().splitlines()
        if "=" in line
    )
    assert env["SOURCE_DATE_EPOCH"] == "1700000000"
    # mmdebstrap builds its chroot in the cache dir, not /tmp, and the scratch is gone after
    assert env["TMPDIR"].startswith(str(tmp_path / "cache/base/"))
    assert not Path(env["TMPDIR"]).exists()
    record = json.loads(first.tarball.with_suffix(".json").read_text())
    assert record["sha256"] == cache.sha256_file(first.tarball)
    assert record["size"] == first.tarball.stat().st_size

    second = bootstrap_base(p, tmp_path / "cache")
    assert second.cached and second.tarball == first.tarball
    assert second.mmdebstrap_version == "9.9.9"
    assert (fake_mmdebstrap / "runs").read_text().count("run") == 1

    third = bootstrap_base(p, tmp_path / "cache", refresh=True)
    assert not third.cached
    assert (fake_mmdebstrap / "runs").read_text().count("run") == 2
    assert not list((tmp_path / "cache/base").glob(".tmp-*"))


def test_damaged_entry_is_rebuilt(tmp_path: Path, fake_mmdebstrap: Path) -> None:
    p = _profile()
    art = bootstrap_base(p, tmp_path / "cache")
    with art.tarball.open("ab") as fh:
        fh.write(b"junk")
    assert not bootstrap_base(p, tmp_path / "cache").cached
    art.tarball.with_suffix(".json").unlink()
    assert not bootstrap_base(p, tmp_path / "cache").cached
    assert (fake_mmdebstrap / "runs").read_text().count("run") == 3


def test_failure_leaves_no_entry(tmp_path: Path, fake_mmdebstrap: Path) -> None:
    (fake_mmdebstrap / "FAKE_FAIL").write_text("")
    with pytest.raises(BuildError) as exc:
        bootstrap_base(_profile(), tmp_path / "cache")
    assert "cannot download packages" in str(exc.value)
    assert exc.value.argv is not None and exc.value.argv[0] == "mmdebstrap"
    assert exc.value.hint is not None
    left = {p.name for p in (tmp_path / "cache/base").iterdir()}
    assert not any(n.endswith(".tar") or n.endswith(".json") or n.startswith(".tmp") for n in left)


def test_missing_mmdebstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolMissingError) as exc:
        bootstrap_base(_profile(), tmp_path / "cache")
    assert exc.value.package == "mmdebstrap"


def test_missing_ubuntu_keyring_names_the_package(tmp_path: Path, fake_mmdebstrap: Path) -> None:
    if Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg").exists():
        pytest.skip("ubuntu-keyring is installed here")
    p = _profile(distribution=Distribution.UBUNTU, suite="noble")
    with pytest.raises(ToolMissingError) as exc:
        bootstrap_base(p, tmp_path / "cache")
    assert exc.value.package == "ubuntu-keyring"


# --- unpack ---------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="owners, device nodes and capabilities need root")
def test_unpack_keeps_owners_modes_links_devices_and_caps(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "usr/bin").mkdir(parents=True)
    (src / "dev").mkdir()
    ping = src / "usr/bin/ping"
    ping.write_bytes(b"ping")
    su = src / "usr/bin/su"
    su.write_bytes(b"su")
    su.chmod(0o4755)
    os.link(su, src / "usr/bin/su2")
    os.chown(src / "usr/bin/ping", 0, 1234)
    os.mknod(src / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (src / "bin").symlink_to("usr/bin")
    has_caps = shutil.which("setcap") is not None and (
        subprocess.run(["setcap", "cap_net_raw+ep", str(ping)], capture_output=True).returncode == 0
    )
    tar = tmp_path / "base.tar"
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-C",
            str(src),
            "-cf",
            str(tar),
            ".",
        ],
        check=True,
    )
    dest = tmp_path / "dest"
    unpack_base(BaseArtifact(tar, "0" * 64, True, 0.0, "x"), dest)
    assert (dest / "usr/bin/su").stat().st_mode & 0o7777 == 0o4755
    assert (dest / "usr/bin/su").stat().st_ino == (dest / "usr/bin/su2").stat().st_ino
    assert (dest / "usr/bin/ping").stat().st_gid == 1234
    dev = (dest / "dev/null").stat()
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1
    assert os.readlink(dest / "bin") == "usr/bin"
    if has_caps:
        assert os.getxattr(dest / "usr/bin/ping", "security.capability") == os.getxattr(
            ping, "security.capability"
        )


def test_unpack_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest/leftover").write_text("x")
    with pytest.raises(BuildError, match="not empty"):
        unpack_base(BaseArtifact(tmp_path / "x.tar", "0" * 64, True, 0.0, "x"), tmp_path / "dest")


def test_unpack_reports_a_damaged_tarball(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BuildError, match="unpacking the base") as exc:
        unpack_base(BaseArtifact(bad, "0" * 64, True, 0.0, "x"), tmp_path / "dest")
    assert exc.value.hint and "--refresh-base" in exc.value.hint


def test_cache_rejects_bad_digests(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        cache.entry_paths(tmp_path, "../../etc/passwd")


def test_fake_tar_is_a_tar(tmp_path: Path, fake_mmdebstrap: Path) -> None:
    art = bootstrap_base(_profile(), tmp_path / "cache")
    with tarfile.open(art.tarball) as tf:
        assert "./etc/marker" in tf.getnames()
