"""Reading helpers shared by the rules: optional reads, accounts, drop-in search order."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator

from goldsmith.controls.steps import Chmod, Chown, Step, WriteFile
from goldsmith.errors import TargetError
from goldsmith.model.records import Change, FileType
from goldsmith.targets.base import StatResult, Target


def _parse_mode(v: object) -> object:
    if isinstance(v, str):
        try:
            return int(v, 8)
        except ValueError:
            raise ValueError(f"not an octal mode: {v!r}") from None
    return v


def _check_mode(v: int) -> int:
    if not 0 <= v <= 0o7777:
        raise ValueError(f"mode {v:o} out of range")
    return v


#: a permission mode; YAML may say "0640" (octal string) or 416
Mode = Annotated[int, BeforeValidator(_parse_mode)]


def fmt_mode(mode: int) -> str:
    return f"{mode:04o}"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def read_optional(t: Target, path: str) -> str | None:
    """File text, or None if the path is missing or not a regular file (after links)."""
    st = t.stat(path)
    if st is None or st.type is not FileType.FILE:
        return None
    return t.read_text(path)


def is_masked(t: Target, path: str) -> bool:
    """A configuration file masked by a link to /dev/null (systemd convention)."""
    st = t.lstat(path)
    return st is not None and st.type is FileType.SYMLINK and t.readlink(path) == "/dev/null"


#: runtime state: a tmpfs on a running system, empty in an image
RUNTIME_DIR = "/run"


def is_runtime_path(path: str) -> bool:
    return path == RUNTIME_DIR or path.startswith(RUNTIME_DIR + "/")


def image_dirs(t: Target, dirs: Sequence[str]) -> tuple[str, ...]:
    """The search directories that can hold configuration on ``t``.

    On an offline image /run is left out: it is a tmpfs at boot, so whatever the image has
    there never takes effect, and while a chroot session runs it is a mount point the
    confined target refuses to enter (TargetEscapeError). On a live system /run/sysctl.d,
    /run/systemd/system and the like do take precedence and are read.
    """
    if t.live:
        return tuple(dirs)
    return tuple(d for d in dirs if not is_runtime_path(d))


def dropin_files(t: Target, dirs: Sequence[str], suffix: str) -> list[str]:
    """Files named ``*suffix`` across ``dirs``: same name, earlier dir wins; lexical by name.

    This is the order of systemd's conf_files_list (sysctl.d, tmpfiles.d, modprobe.d in
    kmod). A file masked with a /dev/null link is dropped along with the ones it masks.
    /run directories count only on a live target (see ``image_dirs``).
    """
    chosen: dict[str, str] = {}
    for d in image_dirs(t, dirs):
        st = t.stat(d)
        if st is None or st.type is not FileType.DIR:
            continue
        for name in t.listdir(d):
            if name.endswith(suffix) and name not in chosen:
                chosen[name] = posixpath.join(d, name)
    return [chosen[name] for name in sorted(chosen) if not is_masked(t, chosen[name])]


# accounts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def read_passwd(t: Target) -> Mapping[str, PasswdEntry]:
    """/etc/passwd by name (the first entry of a name wins, as getpwnam does); read once
    per scan or apply run (memoised: do not change the mapping)."""
    return t.memo("fsutil.passwd", lambda: _parse_passwd(t))


def read_group(t: Target) -> Mapping[str, GroupEntry]:
    """/etc/group by name, like :func:`read_passwd`."""
    return t.memo("fsutil.group", lambda: _parse_group(t))


def _parse_passwd(t: Target) -> dict[str, PasswdEntry]:
    out: dict[str, PasswdEntry] = {}
    for line in (read_optional(t, "/etc/passwd") or "").splitlines():
        f = line.split(":")
        if len(f) != 7 or not f[2].isdigit() or not f[3].isdigit():
            continue
        out.setdefault(f[0], PasswdEntry(f[0], int(f[2]), int(f[3]), f[4], f[5], f[6]))
    return out


def _parse_group(t: Target) -> dict[str, GroupEntry]:
    out: dict[str, GroupEntry] = {}
    for line in (read_optional(t, "/etc/group") or "").splitlines():
        f = line.split(":")
        if len(f) != 4 or not f[2].isdigit():
            continue
        members = tuple(m for m in f[3].split(",") if m)
        out.setdefault(f[0], GroupEntry(f[0], int(f[2]), members))
    return out


def resolve_uid(t: Target, owner: str | int) -> int:
    if isinstance(owner, int) or owner.isdigit():
        return int(owner)
    entry = read_passwd(t).get(owner)
    if entry is None:
        raise TargetError(
            f"user {owner!r} does not exist in {t.description}",
            hint="create it first (a user control ordered before this one)",
        )
    return entry.uid


def resolve_gid(t: Target, group: str | int) -> int:
    if isinstance(group, int) or group.isdigit():
        return int(group)
    entry = read_group(t).get(group)
    if entry is None:
        raise TargetError(
            f"group {group!r} does not exist in {t.description}",
            hint="create it first (a group control ordered before this one)",
        )
    return entry.gid


def _id_names(t: Target) -> tuple[dict[int, str], dict[int, str]]:
    """uid -> name and gid -> name (the first entry of an id wins)."""
    users = {e.uid: e.name for e in reversed(list(read_passwd(t).values()))}
    groups = {e.gid: e.name for e in reversed(list(read_group(t).values()))}
    return users, groups


def owner_text(t: Target, uid: int, gid: int) -> str:
    users, groups = t.memo("fsutil.id-names", lambda: _id_names(t))
    return f"{users.get(uid, str(uid))}:{groups.get(gid, str(gid))}"


# managed files -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileDiff:
    """What differs between a file on the target and what it should be."""

    path: str
    exists: bool
    content_ok: bool
    mode_ok: bool
    owner_ok: bool
    observed_mode: int | None
    observed_owner: tuple[int, int] | None

    @property
    def ok(self) -> bool:
        return self.exists and self.content_ok and self.mode_ok and self.owner_ok


def diff_file(
    t: Target, path: str, content: str | None, mode: int, uid: int, gid: int
) -> tuple[FileDiff, str | None]:
    """Compare a file (content None: do not care about content). Returns diff and old text."""
    st: StatResult | None = t.stat(path)
    if st is None or st.type is not FileType.FILE:
        return FileDiff(path, False, False, False, False, None, None), None
    old = t.read_text(path)
    return (
        FileDiff(
            path,
            True,
            content is None or old == content,
            st.mode == mode,
            (st.uid, st.gid) == (uid, gid),
            st.mode,
            (st.uid, st.gid),
        ),
        old,
    )


def file_steps(
    control: str,
    t: Target,
    path: str,
    content: str,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    validate: Sequence[str] | None = None,
    content_changes: tuple[Change, ...] | None = None,
) -> list[Step]:
    """Steps that make ``path`` hold exactly ``content`` with mode and owner.

    ``content_changes`` replaces the default whole-file change record with finer ones
    (one per sysctl key, say) when the caller knows them.
    """
    d, old = diff_file(t, path, content, mode, uid, gid)
    val = tuple(validate) if validate else None
    if not d.exists or not d.content_ok:
        changes = content_changes or (
            Change(control, path, "content", None if old is None else digest(old), digest(content)),
        )
        extra: list[Change] = []
        if d.exists and not d.mode_ok and d.observed_mode is not None:
            extra.append(Change(control, path, "mode", fmt_mode(d.observed_mode), fmt_mode(mode)))
        if d.exists and not d.owner_ok and d.observed_owner is not None:
            extra.append(
                Change(
                    control,
                    path,
                    "owner",
                    owner_text(t, *d.observed_owner),
                    owner_text(t, uid, gid),
                )
            )
        return [WriteFile(tuple(changes) + tuple(extra), path, content, mode, uid, gid, val)]
    steps: list[Step] = []
    if not d.mode_ok and d.observed_mode is not None:
        steps.append(
            Chmod(
                (Change(control, path, "mode", fmt_mode(d.observed_mode), fmt_mode(mode)),),
                path,
                mode,
            )
        )
    if not d.owner_ok and d.observed_owner is not None:
        steps.append(
            Chown(
                (
                    Change(
                        control,
                        path,
                        "owner",
                        owner_text(t, *d.observed_owner),
                        owner_text(t, uid, gid),
                    ),
                ),
                path,
                uid,
                gid,
            )
        )
    return steps


def describe_diff(d: FileDiff, t: Target, mode: int, uid: int, gid: int) -> str:
    if not d.exists:
        return "missing"
    parts = []
    if not d.content_ok:
        parts.append("content differs")
    if not d.mode_ok and d.observed_mode is not None:
        parts.append(f"mode {fmt_mode(d.observed_mode)} (want {fmt_mode(mode)})")
    if not d.owner_ok and d.observed_owner is not None:
        parts.append(f"owner {owner_text(t, *d.observed_owner)} (want {owner_text(t, uid, gid)})")
    return ", ".join(parts) or "as expected"
