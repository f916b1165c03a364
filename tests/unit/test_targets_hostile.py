"""A hostile image must not make RootfsTarget read, write, chmod, chown, create or delete
anything outside its root.

The image below holds every trick we know: absolute links to host paths, relative
``../../..`` escapes, symlinked intermediate directories pointing out (absolute and relative),
loops, ``..`` in the requested path, and a final component pointing out. A sentinel directory
sits beside the root; after every operation its tree (content, type, mode, owner, mtime,
link targets) must be exactly what it was. Paths that look like the sentinel's host path
also exist *inside* the image, so a confined resolution has something to find, and the
tests check that what comes back is the image's copy, never the host's.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from goldsmith.errors import GoldsmithError, TargetError, TargetEscapeError
from goldsmith.targets.rootfs import RootfsTarget

HOST_SECRET = b"HOST SECRET - must never be read or changed\n"
IMAGE_MIRROR = b"image copy at the sentinel's path\n"
IMAGE_REL = b"image copy at /outside\n"
IMAGE_PASSWD = b"root:x:0:0:image:/root:/bin/sh\n"


def tree_digest(top: Path) -> str:
    """Everything observable about a tree without following links."""
    h = hashlib.sha256()
    entries = [top]
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        entries += [Path(dirpath) / n for n in sorted(dirnames) + sorted(filenames)]
    for p in entries:
        st = p.lstat()
        h.update(f"{p.relative_to(top)}|{st.st_mode:o}|{st.st_uid}|{st.st_gid}|".encode())
        h.update(f"{st.st_size}|{st.st_mtime_ns}|".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode())
        elif stat.S_ISREG(st.st_mode):
            h.update(p.read_bytes())
    return h.hexdigest()


class Hostile:
    def __init__(self, tmp_path: Path) -> None:
        self.outside = tmp_path / "outside"
        self.root = tmp_path / "root"
        o, r = self.outside, self.root
        # the sentinel on the host
        (o / "sub").mkdir(parents=True)
        (o / "passwd").write_bytes(HOST_SECRET)
        (o / "sub" / "f").write_bytes(HOST_SECRET)
        (o / "link-in-sentinel").symlink_to("passwd")
        (o / "passwd").chmod(0o600)
        # the image
        (r / "etc").mkdir(parents=True)
        (r / "etc" / "passwd").write_bytes(IMAGE_PASSWD)
        (r / "usr" / "sbin").mkdir(parents=True)
        mirror = r / str(o).lstrip("/")  # the sentinel's host path, inside the image
        (mirror / "sub").mkdir(parents=True)
        (mirror / "passwd").write_bytes(IMAGE_MIRROR)
        (mirror / "sub" / "f").write_bytes(IMAGE_MIRROR)
        self.mirror = mirror
        (r / "outside").mkdir()
        (r / "outside" / "passwd").write_bytes(IMAGE_REL)
        deep = "../" * (len(r.parts) + 3)
        links = {
            "abs_passwd": f"{o}/passwd",  # absolute link to a host file
            "abs_etc_passwd": "/etc/passwd",  # absolute link to the host's /etc/passwd
            "abs_root": "/",  # absolute link to /
            "abs_outdir": str(o),  # absolute link to a host directory
            "rel_short": "../outside/passwd",  # one level up = the sentinel, naively
            "rel_deep": deep + str(o).lstrip("/") + "/passwd",  # far above the root
            "rel_outdir": "../outside",  # relative link to a directory beside the root
            "loop_a": "loop_b",
            "loop_b": "loop_a",
            "self": "self",
            "dangling_out": f"{o}/newfile",  # final component pointing out, not existing
        }
        for name, target in links.items():
            (r / name).symlink_to(target)
        # symlinked intermediate directories inside a real directory
        (r / "etc" / "cron.d").symlink_to(str(o))
        (r / "etc" / "sudoers.d").symlink_to("../../outside")
        (r / "etc" / "chain1").symlink_to("chain2")
        (r / "etc" / "chain2").symlink_to("../abs_outdir")

    def digest(self) -> str:
        return tree_digest(self.outside)


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    return Hostile(tmp_path)


def _paths(outside: str) -> list[str]:
    return [
        "/abs_passwd",
        "/abs_etc_passwd",
        "/abs_root" + outside + "/passwd",
        "/abs_root/..",
        "/abs_outdir",
        "/abs_outdir/passwd",
        "/abs_outdir/sub",
        "/abs_outdir/sub/f",
        "/abs_outdir/link-in-sentinel",
        "/abs_outdir/newfile",
        "/rel_short",
        "/rel_deep",
        "/rel_outdir",
        "/rel_outdir/passwd",
        "/rel_outdir/newfile",
        "/etc/cron.d",
        "/etc/cron.d/passwd",
        "/etc/cron.d/sub",
        "/etc/sudoers.d/passwd",
        "/etc/chain1/passwd",
        "/etc/chain1/sub/f",
        "/loop_a",
        "/loop_a/x",
        "/self/x",
        "/dangling_out",
        "/../outside/passwd",
        "/../outside",
        "/etc/../../outside/passwd",
        "/../../../.." + outside + "/passwd",
        "/.." + outside + "/sub",
    ]


# The sentinel's real path is only known inside the test; the parametrised ids use a
# placeholder that the test substitutes.
OUT = "@OUT@"

Op = Callable[[RootfsTarget, str], object]

OPERATIONS: dict[str, Op] = {
    "read_bytes": lambda t, p: t.read_bytes(p),
    "read_text": lambda t, p: t.read_text(p),
    "exists": lambda t, p: t.exists(p),
    "lstat": lambda t, p: t.lstat(p),
    "stat": lambda t, p: t.stat(p),
    "readlink": lambda t, p: t.readlink(p),
    "listdir": lambda t, p: t.listdir(p),
    "glob": lambda t, p: t.glob(p),
    "glob-star": lambda t, p: t.glob(p.rstrip("/") + "/*"),
    "glob-globstar": lambda t, p: t.glob(p.rstrip("/") + "/**/*"),
    "write_bytes": lambda t, p: t.write_bytes(p, b"PWNED\n", mode=0o4777, uid=4242, gid=4242),
    "write_text": lambda t, p: t.write_text(p, "PWNED\n"),
    "write_below": lambda t, p: t.write_bytes(p + "/pwned", b"PWNED\n"),
    "chmod": lambda t, p: t.chmod(p, 0o777),
    "chown": lambda t, p: t.chown(p, 4242, 4242),
    "mkdir": lambda t, p: t.mkdir(p, 0o777),
    "mkdir-parents": lambda t, p: t.mkdir(p + "/a/b", 0o777, parents=True),
    "unlink": lambda t, p: t.unlink(p),
    "rmtree": lambda t, p: t.rmtree(p),
    "symlink": lambda t, p: t.symlink("/etc/shadow", p),
    "symlink-below": lambda t, p: t.symlink("/etc/shadow", p + "/pwnlink"),
}


@pytest.mark.parametrize("op", sorted(OPERATIONS))
@pytest.mark.parametrize("path", _paths(OUT))
def test_operation_never_leaves_the_root(hostile: Hostile, op: str, path: str) -> None:
    path = path.replace(OUT, str(hostile.outside))
    t = RootfsTarget(hostile.root)
    before = hostile.digest()
    try:
        result = OPERATIONS[op](t, path)
    except GoldsmithError:
        result = None
    assert hostile.digest() == before, f"{op}({path}) changed the sentinel outside the root"
    # whatever was read came from the image
    if isinstance(result, (bytes, str)):
        data = result.encode() if isinstance(result, str) else result
        assert HOST_SECRET not in data
    if op.startswith("glob"):
        assert isinstance(result, list)
        for p in result:  # every match is an in-image path that exists in the image
            assert p.startswith("/")
            assert t.lstat(p) is not None
    assert (hostile.outside / "passwd").read_bytes() == HOST_SECRET


def test_absolute_link_to_host_file_reads_image_copy(hostile: Hostile) -> None:
    t = RootfsTarget(hostile.root)
    assert t.read_bytes("/abs_passwd") == IMAGE_MIRROR
    assert t.read_bytes("/abs_etc_passwd") == IMAGE_PASSWD
    assert t.read_bytes(f"/abs_root{hostile.outside}/passwd") == IMAGE_MIRROR
    assert t.read_bytes("/abs_outdir/sub/f") == IMAGE_MIRROR
    assert t.read_bytes("/etc/cron.d/passwd") == IMAGE_MIRROR
    assert t.read_bytes("/etc/chain1/passwd") == IMAGE_MIRROR


def test_relative_escapes_stop_at_the_root(hostile: Hostile) -> None:
    t = RootfsTarget(hostile.root)
    assert t.read_bytes("/rel_short") == IMAGE_REL
    assert t.read_bytes("/rel_deep") == IMAGE_MIRROR
    assert t.read_bytes("/rel_outdir/passwd") == IMAGE_REL
    assert t.read_bytes("/etc/sudoers.d/passwd") == IMAGE_REL
    assert t.read_bytes("/../outside/passwd") == IMAGE_REL
    assert t.read_bytes("/etc/../../../outside/passwd") == IMAGE_REL
    assert t.listdir("/..") == t.listdir("/")
    assert t.stat("/abs_root/..") == t.stat("/")


def test_writes_through_outward_links_land_in_the_image(hostile: Hostile) -> None:
    t = RootfsTarget(hostile.root)
    t.write_bytes("/abs_outdir/newfile", b"new\n")
    assert (hostile.mirror / "newfile").read_bytes() == b"new\n"
    t.write_bytes("/rel_outdir/newfile", b"rel\n")
    assert (hostile.root / "outside" / "newfile").read_bytes() == b"rel\n"
    t.mkdir("/etc/cron.d/a/b", parents=True)
    assert (hostile.mirror / "a" / "b").is_dir()
    t.chmod("/abs_passwd", 0o640)
    assert stat.S_IMODE((hostile.mirror / "passwd").stat().st_mode) == 0o640
    assert not (hostile.outside / "newfile").exists()
    assert not (hostile.outside / "a").exists()


def test_final_symlink_is_replaced_not_written_through(hostile: Hostile) -> None:
    t = RootfsTarget(hostile.root)
    t.write_bytes("/dangling_out", b"x\n")
    assert not (hostile.root / "dangling_out").is_symlink()
    assert (hostile.root / "dangling_out").read_bytes() == b"x\n"
    assert not (hostile.mirror / "newfile").exists()


def test_unlink_and_rmtree_remove_the_link_not_its_target(hostile: Hostile) -> None:
    t = RootfsTarget(hostile.root)
    t.unlink("/abs_passwd")
    assert not (hostile.root / "abs_passwd").is_symlink()
    assert (hostile.mirror / "passwd").read_bytes() == IMAGE_MIRROR
    t.rmtree("/abs_outdir")
    assert not (hostile.root / "abs_outdir").is_symlink()
    assert (hostile.mirror / "sub" / "f").exists()


def test_chown_acts_on_the_link_itself(hostile: Hostile) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    t = RootfsTarget(hostile.root)
    t.chown("/abs_passwd", 4242, 4243)
    assert (hostile.root / "abs_passwd").lstat().st_uid == 4242
    assert (hostile.mirror / "passwd").stat().st_uid == os.geteuid()


@pytest.mark.parametrize("path", ["/loop_a", "/loop_a/x", "/self/x", "/self"])
def test_loops_raise_target_error(hostile: Hostile, path: str) -> None:
    t = RootfsTarget(hostile.root)
    with pytest.raises(TargetError, match="too many levels of symbolic links"):
        t.read_bytes(path)
    with pytest.raises(TargetError):
        t.stat(path)
    assert t.lstat("/loop_a") is not None  # the link itself is fine to look at


@pytest.mark.parametrize(
    ("mount_point", "link"),
    [
        ("proc", "/etc"),
        ("proc", "@OUT@"),
        ("sys", "../outside"),
        ("dev", "@OUT@/sub"),
        ("run", "../../../../../../../../tmp"),
    ],
)
def test_run_refuses_symlinked_mount_points(
    hostile: Hostile, mount_point: str, link: str, tmp_path: Path
) -> None:
    root = hostile.root
    for name in ("proc", "sys", "dev", "run"):
        (root / name).mkdir(exist_ok=True)
    (root / mount_point).rmdir()
    (root / mount_point).symlink_to(link.replace(OUT, str(hostile.outside)))
    before = hostile.digest()
    mounts_before = Path("/proc/self/mountinfo").read_text()
    t = RootfsTarget(root)
    with pytest.raises(TargetEscapeError, match="symlink"):
        t.run(["true"])
    with pytest.raises(TargetEscapeError), t.session():
        pass
    assert hostile.digest() == before
    assert Path("/proc/self/mountinfo").read_text() == mounts_before
    assert not (root / "usr" / "sbin" / "policy-rc.d").exists()


def test_run_refuses_a_mount_point_that_is_a_file(hostile: Hostile) -> None:
    root = hostile.root
    (root / "run").write_text("not a directory")
    t = RootfsTarget(root)
    with pytest.raises(TargetEscapeError, match="not a directory"):
        t.run(["true"])


def test_the_fixture_is_hostile_to_naive_path_joining(hostile: Hostile) -> None:
    """The checks above can fail: joining root + path and letting the kernel follow the
    links reaches the sentinel for every kind of link in the image."""
    r = hostile.root
    assert (r / "abs_passwd").read_bytes() == HOST_SECRET
    assert (r / "rel_short").read_bytes() == HOST_SECRET
    assert (r / "rel_deep").read_bytes() == HOST_SECRET
    assert (r / "etc/cron.d/passwd").read_bytes() == HOST_SECRET
    assert (r / "etc/chain1/sub/f").read_bytes() == HOST_SECRET
    assert (r / "rel_outdir/passwd").read_bytes() == HOST_SECRET
    assert Path(os.path.normpath(f"{r}/../outside/passwd")).read_bytes() == HOST_SECRET
    before = hostile.digest()
    (r / "abs_outdir" / "sub").chmod(0o700)
    assert hostile.digest() != before
