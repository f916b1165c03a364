"""HostTarget on paths under tmp_path, and the process runner both targets share."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from goldsmith.errors import BuildError, TargetError, ValidationFailedError
from goldsmith.model.records import FileType
from goldsmith.targets.host import HostTarget
from goldsmith.targets.rootfs import RootfsTarget


@pytest.fixture
def host() -> HostTarget:
    return HostTarget()


def test_identity(host: HostTarget) -> None:
    assert host.live is True
    assert host.root == Path("/")
    assert RootfsTarget(Path("/")).live is False


def test_read_write_stat(host: HostTarget, tmp_path: Path) -> None:
    p = str(tmp_path / "f.conf")
    host.write_text(p, "a=1\n", mode=0o640)
    assert host.read_text(p) == "a=1\n"
    st = host.stat(p)
    assert st is not None and (st.type, st.mode, st.size) == (FileType.FILE, 0o640, 4)
    assert host.exists(p)
    assert host.stat(str(tmp_path / "missing")) is None
    assert host.lstat(str(tmp_path / "missing")) is None
    assert [n for n in os.listdir(tmp_path) if "goldsmith-tmp" in n] == []
    with pytest.raises(TargetError):
        host.read_bytes(str(tmp_path / "missing"))
    with pytest.raises(TargetError, match="not a regular file"):
        host.read_bytes(str(tmp_path))


def test_write_replaces_symlink(host: HostTarget, tmp_path: Path) -> None:
    (tmp_path / "real").write_text("real\n")
    (tmp_path / "link").symlink_to("real")
    host.write_text(str(tmp_path / "link"), "new\n")
    assert not (tmp_path / "link").is_symlink()
    assert (tmp_path / "real").read_text() == "real\n"


def test_validate_on_host(host: HostTarget, tmp_path: Path) -> None:
    p = tmp_path / "sudoers"
    p.write_text("old\n")
    with pytest.raises(ValidationFailedError):
        host.write_text(str(p), "bad\n", validate=["grep", "-q", "good", "%s"])
    assert p.read_text() == "old\n"
    host.write_text(str(p), "good\n", validate=["grep", "-q", "good", "%s"])
    assert p.read_text() == "good\n"
    assert [n for n in os.listdir(tmp_path) if "goldsmith-tmp" in n] == []


def test_links_dirs_and_removal(host: HostTarget, tmp_path: Path) -> None:
    d = str(tmp_path / "a" / "b")
    host.mkdir(d, 0o700, parents=True)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    host.mkdir(d, 0o755)  # existing: unchanged
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    host.symlink("b", str(tmp_path / "a" / "l"))
    assert host.readlink(str(tmp_path / "a" / "l")) == "b"
    lst = host.lstat(str(tmp_path / "a" / "l"))
    assert lst is not None and lst.type is FileType.SYMLINK
    assert host.listdir(str(tmp_path / "a")) == ["b", "l"]
    assert host.glob(str(tmp_path / "a" / "*")) == [d, str(tmp_path / "a" / "l")]
    host.chmod(d, 0o750)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750
    with pytest.raises(TargetError, match="is a directory"):
        host.unlink(d)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_text("k")
    (tmp_path / "a" / "b" / "out").symlink_to(tmp_path / "outside")
    host.unlink(str(tmp_path / "a" / "l"))
    host.rmtree(str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    assert (tmp_path / "outside" / "keep").read_text() == "k"


def test_run_clean_environment(host: HostTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_LEAK", "leaked")
    r = host.run(
        ["sh", "-c", 'echo "$PATH|$LC_ALL|$DEBIAN_FRONTEND|$HOME|$GOLDSMITH_LEAK|$X"'],
        env={"X": "y"},
    )
    assert r.ok
    assert r.stdout == "/usr/sbin:/usr/bin:/sbin:/bin|C.UTF-8|noninteractive|/root||y\n"
    assert r.argv[0] == "sh"


def test_run_input_and_exit_status(host: HostTarget) -> None:
    assert host.run(["cat"], input="hello").stdout == "hello"
    r = host.run(["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert (r.returncode, r.stderr, r.ok) == (3, "oops\n", False)
    with pytest.raises(BuildError) as err:
        host.run(["sh", "-c", "echo broken >&2; exit 4"])
    assert err.value.argv == ["sh", "-c", "echo broken >&2; exit 4"]
    assert err.value.stderr_tail == "broken"
    with pytest.raises(BuildError, match="cannot start"):
        host.run(["/nonexistent/binary"])


def test_run_timeout_kills_the_process_group(host: HostTarget, tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    start = time.monotonic()
    with pytest.raises(BuildError, match="timed out"):
        # the grandchild would write the marker if the group were not killed
        host.run(["sh", "-c", f"(sleep 2; touch {marker}) & sleep 30"], timeout=0.5)
    assert time.monotonic() - start < 5
    time.sleep(2.5)
    assert not marker.exists()
