"""A bootable GPT disk image (raw and/or qcow2) from a finished rootfs.

Layout (BIOS boot, so it boots under plain ``qemu-system-x86_64`` with SeaBIOS, no
``-kernel``)::

    1 MiB  GPT + alignment
    p1     1 MiB BIOS boot partition (GRUB's core.img)
    p2     ext4 "/"                     image.root_size
    p3..   ext4 per image.partitions entry with fs: ext4, in profile order
    1 MiB  slack for the backup GPT

tmpfs entries (``/tmp``) get no partition, only an fstab line. Every GUID and filesystem
UUID is derived from the profile name and version (``uuid5``), so fstab and grub.cfg are
the same on every build of one profile version.

How it is made: the rootfs is mirrored into a hard-link farm (nothing in the caller's tree
is changed), split into one tree per filesystem (each separately mounted subtree moves to
its own tree; its mount point stays behind as an empty directory with the same mode,
owner and xattrs), /etc/fstab, /boot/grub/grub.cfg and a GRUB defaults drop-in are written
into the farm, and ``mkfs.ext4 -d`` writes each tree straight into the raw file at its
partition offset (owners, modes, xattrs such as security.capability and hard links are
kept; the append-only attribute is not, it is set at boot by tmpfiles.d). Only GRUB's
installation needs a loop device: ``losetup -P``, mount the root, bind /dev, /proc, /sys,
``chroot grub-install --target=i386-pc``, unmount, ``e2fsck -fn`` every filesystem,
detach. Everything mounted or attached is undone in ``finally``, also on errors and
Ctrl-C. The image carries, besides the rootfs tree: /boot/grub/* (GRUB's modules, written
by grub-install), /boot/grub/grub.cfg, /etc/default/grub.d/05-goldsmith-image.cfg and the rendered
/etc/fstab (``DiskImages.image_only_paths``), and an empty ``lost+found`` per filesystem.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from goldsmith.errors import BuildError, ToolMissingError
from goldsmith.model.profile import Profile
from goldsmith.targets.base import Target

log = logging.getLogger(__name__)

SECTOR = 512
MiB = 1024 * 1024
ALIGN = MiB
BIOS_BOOT_SIZE = MiB
GPT_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
GPT_ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # discoverable partitions spec
GPT_LINUX_DATA = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ROOT_OPTIONS = ("errors=remount-ro",)
#: fixed namespace for every derived identifier (never change it: it would change every UUID)
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://goldsmith.invalid/disk-image/v1")
_SIZE_RE = re.compile(r"^([0-9]+)([KMG])$")
_SIZE_UNITS = {"K": 1024, "M": MiB, "G": 1024 * MiB}
# kernel command line words: printable, no quoting or GRUB/shell metacharacters
_CMDLINE_WORD = re.compile(r"^[A-Za-z0-9_.,:=/+@%-]+$")
HOST_TOOLS: dict[str, str] = {
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "partx": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "chroot": "coreutils",
    "cp": "coreutils",
    "qemu-img": "qemu-utils",
}
IMAGE_ONLY_PATHS = ("/etc/fstab", "/boot/grub", "/etc/default/grub.d/05-goldsmith-image.cfg")


# --- layout (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskPartition:
    """One filesystem partition of the disk image."""

    number: int  # GPT partition number (1 is the BIOS boot partition)
    label: str  # GPT partition name and filesystem label
    mountpoint: str
    fs: str  # "ext4"
    size: int  # bytes
    offset: int  # bytes from the start of the disk
    uuid: str  # filesystem UUID (fstab UUID=, root=UUID=)
    partuuid: str  # GPT partition UUID
    type_guid: str
    options: tuple[str, ...]  # fstab mount options


@dataclass(frozen=True)
class DiskLayout:
    disk_guid: str
    size: int  # bytes, whole disk
    bios_boot_offset: int
    bios_boot_uuid: str
    partitions: tuple[DiskPartition, ...]  # root first

    @property
    def root(self) -> DiskPartition:
        return self.partitions[0]


@dataclass(frozen=True)
class DiskImages:
    raw: Path | None
    qcow2: Path | None
    partitions: tuple[DiskPartition, ...]  # filesystems on the disk, root first
    disk_guid: str
    size: int  # virtual disk size in bytes
    kernel: str  # in-image path of the kernel GRUB boots
    initrd: str
    cmdline: str  # the full kernel command line in grub.cfg
    boot: str = "bios"  # SeaBIOS + GRUB i386-pc; no UEFI
    #: in-image paths the disk image has and the rootfs tar does not (or may differ in)
    image_only_paths: tuple[str, ...] = IMAGE_ONLY_PATHS


def parse_size(size: str) -> int:
    m = _SIZE_RE.match(size)
    if m is None:
        raise BuildError(f"invalid size {size!r}", hint="use a number with K, M or G")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def derived_uuid(profile: Profile, kind: str, name: str) -> str:
    """A stable UUID for one object of one profile version's disk image."""
    return str(uuid.uuid5(UUID_NAMESPACE, f"{profile.name}\0{profile.version}\0{kind}\0{name}"))


def fs_label(mountpoint: str) -> str:
    """ "/" -> "root", "/var/log/audit" -> "var-log-audit" (ext4 labels hold 16 bytes)."""
    label = mountpoint.strip("/").replace("/", "-") or "root"
    return label[:16]


def _align_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def compute_layout(profile: Profile) -> DiskLayout:
    img = profile.image
    offset = ALIGN
    bios_offset = offset
    offset += BIOS_BOOT_SIZE
    parts: list[DiskPartition] = []
    wanted = [("/", img.root_size, ROOT_OPTIONS, GPT_ROOT_X86_64)] + [
        (p.mountpoint, p.size, tuple(p.options), GPT_LINUX_DATA)
        for p in img.partitions
        if p.fs == "ext4"
    ]
    labels: set[str] = set()
    for number, (mountpoint, size_text, options, type_guid) in enumerate(wanted, start=2):
        size = _align_up(parse_size(size_text))
        label = fs_label(mountpoint)
        if label in labels:
            raise BuildError(
                f"two partitions would share the label {label!r}",
                hint="shorten or rename the mount points in image.partitions",
            )
        labels.add(label)
        parts.append(
            DiskPartition(
                number=number,
                label=label,
                mountpoint=mountpoint,
                fs="ext4",
                size=size,
                offset=offset,
                uuid=derived_uuid(profile, "fs", mountpoint),
                partuuid=derived_uuid(profile, "part", mountpoint),
                type_guid=type_guid,
                options=options,
            )
        )
        offset += size
    return DiskLayout(
        disk_guid=derived_uuid(profile, "disk", ""),
        size=offset + ALIGN,  # room for the backup GPT (33 sectors)
        bios_boot_offset=bios_offset,
        bios_boot_uuid=derived_uuid(profile, "part", "bios-boot"),
        partitions=tuple(parts),
    )


def render_sfdisk_script(layout: DiskLayout) -> str:
    lines = [
        "label: gpt",
        f"label-id: {layout.disk_guid.upper()}",
        "unit: sectors",
        f"first-lba: {ALIGN // SECTOR}",
        "",
        f"start={layout.bios_boot_offset // SECTOR}, size={BIOS_BOOT_SIZE // SECTOR}, "
        f'type={GPT_BIOS_BOOT}, uuid={layout.bios_boot_uuid.upper()}, name="bios-boot"',
    ]
    for p in layout.partitions:
        lines.append(
            f"start={p.offset // SECTOR}, size={p.size // SECTOR}, type={p.type_guid}, "
            f'uuid={p.partuuid.upper()}, name="{p.label}"'
        )
    return "\n".join(lines) + "\n"


def _mount_key(mountpoint: str) -> tuple[str, ...]:
    return tuple(c for c in mountpoint.split("/") if c)


def _options(options: Sequence[str]) -> str:
    return ",".join(options) if options else "defaults"


def render_fstab(profile: Profile) -> str:
    """The image's /etc/fstab: root, every ext4 partition, every tmpfs, parents first."""
    layout = compute_layout(profile)
    rows: list[tuple[str, str, str, str, str]] = []
    for p in layout.partitions:
        passno = "1" if p.mountpoint == "/" else "2"
        rows.append((f"UUID={p.uuid}", p.mountpoint, "ext4", _options(p.options), passno))
    for t in profile.image.partitions:
        if t.fs != "tmpfs":
            continue
        opts = [o for o in t.options if o != "defaults"]
        if not any(o.startswith("size=") for o in opts):
            opts.append(f"size={t.size}")
        rows.append(("tmpfs", t.mountpoint, "tmpfs", _options(opts), "0"))
    rows.sort(key=lambda r: _mount_key(r[1]))
    out = [
        f"# /etc/fstab of {profile.output_name}, written by goldsmith.",
        "# Separate filesystems carry nodev/nosuid/noexec where the profile asks for them.",
        "# <file system> <mount point> <type> <options> <dump> <pass>",
    ]
    out += [f"{src} {mnt} {fs} {opts} 0 {passno}" for src, mnt, fs, opts, passno in rows]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class SerialConsole:
    unit: int
    speed: int


def serial_console(cmdline: Sequence[str]) -> SerialConsole | None:
    """The last ``console=ttyS<n>[,<speed>...]`` on the command line (the kernel's choice)."""
    found: SerialConsole | None = None
    for word in cmdline:
        m = re.match(r"^console=ttyS([0-9]+)(?:,([0-9]+))?", word)
        if m:
            found = SerialConsole(int(m.group(1)), int(m.group(2) or 9600))
    return found


def kernel_cmdline(profile: Profile, extra: Sequence[str] = ()) -> str:
    """root=, ro, the profile's image.cmdline, then ``extra`` words (from the image's own
    /etc/default/grub.d drop-ins, e.g. audit=1 set by a control) not already present."""
    layout = compute_layout(profile)
    words = list(profile.image.cmdline)
    words += [w for w in extra if w not in words]
    for word in words:
        if not _CMDLINE_WORD.match(word):
            raise BuildError(
                f"image.cmdline entry {word!r} has characters goldsmith will not put on a "
                "kernel command line",
                hint="use plain key=value words without quotes, spaces or ; $ ` { }",
            )
    return " ".join([f"root=UUID={layout.root.uuid}", "ro", *words])


def render_grub_cfg(
    profile: Profile, *, kernel: str, initrd: str, extra: Sequence[str] = ()
) -> str:
    layout = compute_layout(profile)
    serial = serial_console(profile.image.cmdline)
    lines = [
        f"# grub.cfg of {profile.output_name}, written by goldsmith (not by grub-mkconfig).",
        "set default=0",
        "set timeout=1",
    ]
    if serial is not None:
        lines += [
            f"serial --unit={serial.unit} --speed={serial.speed}",
            "terminal_input console serial",
            "terminal_output console serial",
        ]
    lines += [
        "insmod part_gpt",
        "insmod ext2",
        f"search --no-floppy --fs-uuid --set=root {layout.root.uuid}",
        f"menuentry '{profile.output_name}' {{",
        f"\tlinux {kernel} {kernel_cmdline(profile, extra)}",
        f"\tinitrd {initrd}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_grub_defaults(profile: Profile) -> str:
    """So a kernel update's update-grub on the running host keeps the console and cmdline."""
    kernel_cmdline(profile)  # validates the words
    serial = serial_console(profile.image.cmdline)
    lines = [
        "# written by goldsmith: keeps the image's kernel command line across update-grub",
        f"GRUB_CMDLINE_LINUX={shlex.quote(' '.join(profile.image.cmdline))}",
        "GRUB_TIMEOUT=1",
    ]
    if serial is not None:
        lines += [
            "GRUB_TERMINAL='console serial'",
            "GRUB_SERIAL_COMMAND="
            + shlex.quote(f"serial --unit={serial.unit} --speed={serial.speed}"),
        ]
    return "\n".join(lines) + "\n"


#: what grub-mkconfig does to learn the kernel arguments, run inside the image (a chroot)
#: so the image's shell files never execute on the build host
_GRUB_ARGS_SCRIPT = (
    "set -e; [ -r /etc/default/grub ] && . /etc/default/grub; "
    'for f in /etc/default/grub.d/*.cfg; do [ -r "$f" ] && . "$f"; done; '
    'printf "%s\\n" "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"'
)


def image_grub_args(target: Target) -> list[str]:
    """Kernel arguments from the image's /etc/default/grub and grub.d drop-ins."""
    out = target.run(["/bin/sh", "-c", _GRUB_ARGS_SCRIPT]).stdout
    words = out.split()
    for word in words:
        if not _CMDLINE_WORD.match(word):
            raise BuildError(
                f"the image's GRUB defaults add {word!r} to the kernel command line, which "
                "goldsmith will not put there",
                hint="check /etc/default/grub and /etc/default/grub.d/*.cfg in the image",
            )
    return list(dict.fromkeys(words))


def _version_key(name: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", name) if p)


def find_kernel(root: Path) -> tuple[str, str]:
    """In-image paths of the newest kernel in /boot and its initramfs."""
    boot = root / "boot"
    kernels = sorted(
        (p.name for p in boot.glob("vmlinuz-*") if p.is_file() and not p.is_symlink()),
        key=_version_key,
    )
    if not kernels:
        raise BuildError(
            "the rootfs has no kernel in /boot",
            hint="set base.kernel (e.g. linux-image-amd64) in the profile",
        )
    version = kernels[-1].removeprefix("vmlinuz-")
    initrd = boot / f"initrd.img-{version}"
    if not initrd.is_file():
        raise BuildError(
            f"the rootfs has no initramfs for kernel {version}",
            hint="add initramfs-tools to base.include",
        )
    return f"/boot/vmlinuz-{version}", f"/boot/initrd.img-{version}"


# --- doing it ------------------------------------------------------------------------------


def _require_tools() -> None:
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise ToolMissingError(tool, package)


def _run(
    argv: Sequence[str],
    what: str,
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> str:
    log.debug("run: %s", " ".join(argv))
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"{what}: timed out after {timeout:.0f} s", argv=argv) from e
    if proc.returncode != 0:
        raise BuildError(what, argv=argv, stderr=proc.stderr or proc.stdout)
    return proc.stdout


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _ensure_dirs(root: Path, rel: str, mode: int = 0o755) -> Path:
    """Create in-image directories under ``root`` without following any symlink."""
    cur = root
    for comp in _mount_key(rel):
        cur = cur / comp
        try:
            st = cur.lstat()
        except FileNotFoundError:
            cur.mkdir(mode=mode)
            os.chown(cur, 0, 0, follow_symlinks=False)
            cur.chmod(mode)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise BuildError(
                f"{rel} cannot be used in the image: /{cur.relative_to(root)} is not a directory"
                " (a symlink or a file)",
                hint="the rootfs must have real directories on the path of every mount point",
            )
    return cur


def _write_in_tree(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    """Replace an in-image file in the farm (unlinking first: it may be a hard link into the
    caller's rootfs, which must not change)."""
    parent = _ensure_dirs(root, str(Path(rel).parent))
    dest = parent / Path(rel).name
    with contextlib.suppress(FileNotFoundError):
        if _is_real_dir(dest):
            raise BuildError(f"{rel} is a directory in the rootfs")
        dest.unlink()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chown(dest, 0, 0)
    dest.chmod(mode)


def _copy_dir_meta(src: Path, dst: Path) -> None:
    st = src.lstat()
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    dst.chmod(stat.S_IMODE(st.st_mode))
    for name in os.listxattr(src, follow_symlinks=False):
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False))


def split_trees(rootfs: Path, layout: DiskLayout, farm: Path) -> dict[str, Path]:
    """Mirror ``rootfs`` into ``farm`` and split it into one tree per filesystem.

    Returns mountpoint -> tree directory. The caller's rootfs is never modified: the farm
    holds hard links (same filesystem) or copies (different filesystems).
    """
    farm.mkdir(parents=True)
    root_tree = farm / "root"
    same_fs = rootfs.stat().st_dev == farm.stat().st_dev
    argv = ["cp", "-a", "--one-file-system"]
    argv += ["-l"] if same_fs else []
    _run([*argv, "--", f"{rootfs}/.", f"{root_tree}/"], "mirroring the rootfs for the disk image")
    trees = {"/": root_tree}
    # deepest first: /var/log/audit leaves /var/log before /var/log leaves the root
    for p in sorted(layout.partitions[1:], key=lambda p: -len(_mount_key(p.mountpoint))):
        inside = root_tree / "/".join(_mount_key(p.mountpoint))
        tree = farm / f"fs-{p.number}"
        _ensure_dirs(root_tree, str(Path(p.mountpoint).parent))
        if _is_real_dir(inside):
            inside.rename(tree)
            inside.mkdir()
            _copy_dir_meta(tree, inside)
        elif inside.is_symlink() or inside.exists():
            raise BuildError(
                f"mount point {p.mountpoint} is not a directory in the rootfs",
                hint="a separately mounted path must be a real directory, not a symlink",
            )
        else:
            tree.mkdir(mode=0o755)
            _ensure_dirs(root_tree, p.mountpoint)
        trees[p.mountpoint] = tree
    return trees


def mkfs_argv(
    p: DiskPartition, tree: Path, image: Path, *, hash_seed: str | None = None
) -> list[str]:
    extended = [f"offset={p.offset}", f"hash_seed={hash_seed or p.uuid}"]
    return [
        "mkfs.ext4",
        "-q",
        "-F",
        "-b",
        "4096",
        "-I",
        "256",
        "-L",
        p.label,
        "-U",
        p.uuid,
        "-E",
        ",".join(extended),
        "-d",
        str(tree),
        str(image),
        f"{p.size // 1024}k",
    ]


@contextlib.contextmanager
def _loop_device(image: Path, partitions: Sequence[int]) -> Iterator[str]:
    """A loop device for ``image`` with its partition devices (``/dev/loopNpK``)."""
    dev = _run(
        ["losetup", "--find", "--show", "--partscan", str(image)], "attaching a loop device"
    ).strip()
    try:
        if not _wait_for_nodes(dev, partitions, timeout=2.0):
            # some kernels (containers, loop max_part=0) skip the partition scan of -P;
            # partx adds the partitions through BLKPG instead
            _run(["partx", "--add", dev], f"adding the partitions of {dev}")
            if not _wait_for_nodes(dev, partitions, timeout=10.0):
                raise BuildError(
                    f"the partition devices of {dev} did not appear",
                    hint="the kernel must support partitions on loop devices",
                )
        yield dev
    finally:
        subprocess.run(["partx", "--delete", dev], capture_output=True)
        _detach(dev)


def _detach(dev: str) -> None:
    proc: subprocess.CompletedProcess[str] | None = None
    for attempt in range(10):
        proc = subprocess.run(["losetup", "-d", dev], capture_output=True, text=True)
        if proc.returncode == 0:
            return
        time.sleep(0.2 * (attempt + 1))
    log.error("could not detach %s: %s", dev, proc.stderr.strip() if proc else "")


def _wait_for_nodes(dev: str, partitions: Sequence[int], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if all(_is_block(f"{dev}p{n}") for n in partitions):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _is_block(path: str) -> bool:
    try:
        return stat.S_ISBLK(Path(path).stat().st_mode)
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _mounted(argv_tail: Sequence[str], where: Path, what: str) -> Iterator[Path]:
    _run(["mount", *argv_tail, str(where)], f"mounting {what}")
    try:
        yield where
    finally:
        _umount(where)


def _umount(where: Path) -> None:
    proc = subprocess.run(["umount", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        log.warning("umount %s failed (%s); detaching lazily", where, proc.stderr.strip())
        subprocess.run(["umount", "--lazy", str(where)], capture_output=True, text=True)


_CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}


@dataclass(frozen=True)
class RootDirMeta:
    """Mode and owner of a tree's top directory: ``mkfs.ext4 -d`` does not copy them to the
    new filesystem's root, so /var/tmp would come out 0755 instead of 1777."""

    mode: int
    uid: int
    gid: int


def root_dir_meta(tree: Path) -> RootDirMeta:
    st = tree.lstat()
    return RootDirMeta(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def debugfs_root_fix(meta: RootDirMeta) -> str:
    """debugfs requests setting the root inode (<2>) to ``meta``."""
    mode = stat.S_IFDIR | meta.mode
    fields = [
        ("mode", f"0{mode:o}"),
        ("uid", str(meta.uid & 0xFFFF)),
        ("gid", str(meta.gid & 0xFFFF)),
    ]
    fields += [("uid_high", str(meta.uid >> 16)), ("gid_high", str(meta.gid >> 16))]
    return "".join(f"set_inode_field <2> {k} {v}\n" for k, v in fields)


def install_grub(
    image: Path,
    layout: DiskLayout,
    mnt: Path,
    roots: Mapping[str, RootDirMeta] | None = None,
) -> None:
    """grub-install (the image's own GRUB) into the MBR and the BIOS boot partition."""
    with contextlib.ExitStack() as stack:
        dev = stack.enter_context(_loop_device(image, [p.number for p in layout.partitions]))
        root_dev = f"{dev}p{layout.root.number}"
        mnt.mkdir(parents=True, exist_ok=True)
        # entered in order, left in reverse: pseudo-filesystems first, then the root
        with contextlib.ExitStack() as mounts:
            mounts.enter_context(_mounted([root_dev], mnt, "the image's root filesystem"))
            for name, args in (
                ("dev", ["--bind", "/dev"]),
                ("proc", ["-t", "proc", "proc"]),
                ("sys", ["-t", "sysfs", "sysfs"]),
            ):
                target = _ensure_dirs(mnt, f"/{name}")
                mounts.enter_context(_mounted(args, target, f"/{name} in the image"))
            _run(
                [
                    "chroot",
                    str(mnt),
                    "grub-install",
                    "--target=i386-pc",
                    "--no-floppy",
                    "--modules=part_gpt ext2",
                    "--boot-directory=/boot",
                    dev,
                ],
                "installing GRUB into the disk image",
                env=_CHROOT_ENV,
            )
        for p in layout.partitions:
            meta = (roots or {}).get(p.mountpoint)
            if meta is not None:
                _run(
                    ["debugfs", "-w", "-f", "-", f"{dev}p{p.number}"],
                    f"setting the mode and owner of the {p.mountpoint} filesystem's root",
                    input=debugfs_root_fix(meta),
                )
            _run(["e2fsck", "-fn", f"{dev}p{p.number}"], f"checking the {p.mountpoint} filesystem")


def build_disk_image(
    rootfs: Path,
    profile: Profile,
    out_dir: Path,
    *,
    work_dir: Path,
    extra_cmdline: Sequence[str] = (),
) -> DiskImages:
    """Build ``<output_name>.raw`` and/or ``.qcow2`` in ``out_dir`` (as image.formats says).

    ``extra_cmdline``: kernel arguments the image's own GRUB defaults add (see
    ``image_grub_args``), so grub.cfg says what update-grub on the host would say."""
    _require_tools()
    formats = set(profile.image.formats)
    if not formats:
        raise BuildError("image.formats is empty: nothing to build")
    if not _is_real_dir(rootfs):
        raise BuildError(f"rootfs {rootfs} is not a directory")
    if (
        not (rootfs / "usr/sbin/grub-install").exists()
        or not (rootfs / "usr/lib/grub/i386-pc").is_dir()
    ):
        raise BuildError(
            "the rootfs has no BIOS GRUB (grub-install and /usr/lib/grub/i386-pc)",
            hint="add grub-pc to base.include",
        )
    layout = compute_layout(profile)
    kernel, initrd = find_kernel(rootfs)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="disk-", dir=work_dir))
    name = profile.output_name
    raw_final = out_dir / f"{name}.raw"
    qcow2_final = out_dir / f"{name}.qcow2"
    # build the raw where it will stay, so a sparse multi-GB file is never copied
    raw_tmp = (out_dir if "raw" in formats else work) / f".{name}.raw.partial"
    qcow2_tmp = out_dir / f".{name}.qcow2.partial"
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(profile.base.source_date_epoch)}
    try:
        trees = split_trees(rootfs, layout, work / "farm")
        root_tree = trees["/"]
        _write_in_tree(root_tree, "/etc/fstab", render_fstab(profile))
        _write_in_tree(
            root_tree,
            "/boot/grub/grub.cfg",
            render_grub_cfg(profile, kernel=kernel, initrd=initrd, extra=extra_cmdline),
            mode=0o600,  # CIS 1.4.2: only root reads the bootloader configuration
        )
        _write_in_tree(
            root_tree, "/etc/default/grub.d/05-goldsmith-image.cfg", render_grub_defaults(profile)
        )

        with raw_tmp.open("wb") as f:
            f.truncate(layout.size)
        _run(
            ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(raw_tmp)],
            "partitioning the disk image",
            input=render_sfdisk_script(layout),
        )
        for p in layout.partitions:
            _run(
                mkfs_argv(p, trees[p.mountpoint], raw_tmp),
                f"creating the {p.mountpoint} filesystem (is {p.size // MiB} MiB enough?)",
                env=env,
            )
        roots = {mp: root_dir_meta(tree) for mp, tree in trees.items()}
        shutil.rmtree(work / "farm")
        install_grub(raw_tmp, layout, work / "mnt", roots)

        qcow2: Path | None = None
        if "qcow2" in formats:
            _run(
                ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw_tmp), str(qcow2_tmp)],
                "converting the disk image to qcow2",
            )
            qcow2_tmp.replace(qcow2_final)
            qcow2 = qcow2_final
        raw: Path | None = None
        if "raw" in formats:
            raw_tmp.replace(raw_final)
            raw = raw_final
        return DiskImages(
            raw=raw,
            qcow2=qcow2,
            partitions=layout.partitions,
            disk_guid=layout.disk_guid,
            size=layout.size,
            kernel=kernel,
            initrd=initrd,
            cmdline=kernel_cmdline(profile, extra_cmdline),
        )
    finally:
        for leftover in (raw_tmp, qcow2_tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        _remove_work(work)


def _remove_work(work: Path) -> None:
    # never delete through a mount that could not be undone (it would be the image or /dev)
    for dirpath, dirnames, _ in os.walk(work):
        for d in dirnames:
            if os.path.ismount(os.path.join(dirpath, d)):  # noqa: PTH118
                log.error("not removing %s: %s is still mounted", work, Path(dirpath, d))
                return
    shutil.rmtree(work, ignore_errors=True)
