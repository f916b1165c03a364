"""Scanner content from the Debian archive, fetched and verified by apt, pinned and cached.

* SCAP content: ComplianceAsCode's ``ssg-debian`` package. Only 0.1.82 (in Debian's *sid*)
  carries ``ssg-debian13-ds.xml``; Debian 13's own 0.1.76 has no Debian 13 content.
* Lynis: Debian's ``lynis`` package of the image's suite, so the scanner version is pinned
  independently of the build host and recorded in the manifest.

Nothing is downloaded from anywhere but the Debian mirror, and only through apt: a private
apt tree under ``cache_dir/apt/<suite>`` (its own sources list, state, cache and no host
configuration) with ``signed-by`` the Debian archive keyring, so apt checks the Release
signature and the package hash from the signed index. sid's Release file on the mirror is
often past its Valid-Until date, so for sid alone the sources line carries
``check-valid-until=no`` (the signature is still checked).

Extracted trees are cached under ``cache_dir/content/<package>_<version>/`` and reused; a
half-extracted tree never becomes visible (extract to a temp dir, then rename).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from goldsmith.scan import ScanError, run_host

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SSG_VERSION = "0.1.82"
SSG_SUITE = "sid"
LYNIS_VERSION = "3.1.4"
LYNIS_SUITE = "trixie"
#: suites whose Release file on the mirror may be past Valid-Until
_UNSTABLE_SUITES = frozenset({"sid", "unstable", "experimental"})
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~:-]*$")


@dataclass(frozen=True)
class FetchedPackage:
    """A .deb apt downloaded and verified, and the tree it was extracted to."""

    name: str
    version: str  # full Debian version, e.g. "0.1.82-1"
    suite: str
    deb: Path
    sha256: str
    root: Path  # the extracted tree


def ensure_ssg_content(
    cache_dir: Path,
    *,
    version: str = SSG_VERSION,
    product: str = "debian13",
    suite: str = SSG_SUITE,
    mirror: str = DEFAULT_MIRROR,
    keyring: Path = DEBIAN_KEYRING,
) -> Path:
    """Path of ``ssg-<product>-ds.xml`` from ssg-debian ``version`` (fetched if not cached)."""
    if not _SAFE.match(product):
        raise ScanError(f"invalid SCAP product name {product!r}")
    pkg = fetch_package(
        cache_dir, "ssg-debian", version, suite=suite, mirror=mirror, keyring=keyring
    )
    ds = pkg.root / "usr/share/xml/scap/ssg/content" / f"ssg-{product}-ds.xml"
    if not ds.is_file():
        have = sorted(p.name for p in ds.parent.glob("ssg-*-ds.xml"))
        raise ScanError(
            f"ssg-debian {pkg.version} has no {ds.name}",
            hint="datastreams in that package: " + (", ".join(have) or "none"),
        )
    return ds


def ensure_lynis(
    cache_dir: Path,
    *,
    version: str = LYNIS_VERSION,
    suite: str = LYNIS_SUITE,
    mirror: str = DEFAULT_MIRROR,
    keyring: Path = DEBIAN_KEYRING,
) -> Path:
    """A directory laid out for ``lynis --usecwd`` (lynis, include/, db/, plugins/,
    default.prf) from Debian's lynis package, fetched if not cached."""
    pkg = fetch_package(cache_dir, "lynis", version, suite=suite, mirror=mirror, keyring=keyring)
    dest = cache_dir / "content" / f"lynis-usecwd_{pkg.version}"
    if dest.is_dir():
        return dest
    parts = {
        "lynis": pkg.root / "usr/sbin/lynis",
        "include": pkg.root / "usr/share/lynis/include",
        "db": pkg.root / "usr/share/lynis/db",
        "plugins": pkg.root / "etc/lynis/plugins",
        "default.prf": pkg.root / "etc/lynis/default.prf",
    }
    missing = [str(p) for p in parts.values() if not p.exists()]
    if missing:
        raise ScanError(f"lynis {pkg.version} package lacks {', '.join(missing)}")
    tmp = Path(tempfile.mkdtemp(prefix=".lynis-", dir=dest.parent))
    try:
        for name, src in parts.items():
            if src.is_dir():
                shutil.copytree(src, tmp / name, symlinks=True)
            else:
                shutil.copy2(src, tmp / name)
        tmp.chmod(0o755)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def fetch_package(
    cache_dir: Path,
    package: str,
    version: str,
    *,
    suite: str,
    mirror: str = DEFAULT_MIRROR,
    keyring: Path = DEBIAN_KEYRING,
) -> FetchedPackage:
    """Download ``package`` at ``version`` from ``suite`` with apt and extract it.

    ``version`` is either a full Debian version ("0.1.82-1") or an upstream version
    ("0.1.82"), which matches any Debian revision of it (the highest is taken).
    """
    for value, what in ((package, "package"), (version, "version"), (suite, "suite")):
        if not _SAFE.match(value):
            raise ScanError(f"invalid {what} {value!r}")
    if not keyring.is_file():
        raise ScanError(
            f"archive keyring {keyring} not found",
            hint="apt-get install debian-archive-keyring",
        )
    cache_dir = cache_dir.resolve()
    content = cache_dir / "content"
    content.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        cached = _cached(content, package, version)
        if cached is not None:
            return cached
        apt = _AptTree(cache_dir / "apt" / suite, suite=suite, mirror=mirror, keyring=keyring)
        apt.update()
        full = apt.pick_version(package, version)
        deb = apt.download(package, full, content / "debs")
        digest = _sha256(deb)
        root = content / f"{package}_{full}"
        if not root.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=content))
            try:
                run_host(["dpkg-deb", "-x", str(deb), str(tmp)], what=f"extracting {deb.name}")
                tmp.chmod(0o755)
                tmp.rename(root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        meta = {"package": package, "version": full, "suite": suite, "deb": deb.name}
        (content / f"{package}_{full}.json").write_text(
            json.dumps({**meta, "sha256": digest}, indent=1, sort_keys=True) + "\n"
        )
        log.info("fetched %s %s from %s (sha256 %s)", package, full, suite, digest)
        return FetchedPackage(package, full, suite, deb, digest, root)


# cache ---------------------------------------------------------------------------------------
def _matches(full: str, wanted: str) -> bool:
    if full == wanted:
        return True
    no_epoch = full.split(":", 1)[-1]
    upstream = no_epoch.rsplit("-", 1)[0] if "-" in no_epoch else no_epoch
    return upstream == wanted


def _cached(content: Path, package: str, version: str) -> FetchedPackage | None:
    """An earlier fetch of the same package and version, if its .deb still hashes right."""
    for meta_path in sorted(content.glob(f"{package}_*.json"), reverse=True):
        try:
            meta = json.loads(meta_path.read_text())
            full, suite, name, digest = (
                str(meta["version"]),
                str(meta["suite"]),
                str(meta["deb"]),
                str(meta["sha256"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable cache record %s", meta_path)
            continue
        if meta.get("package") != package or not _matches(full, version):
            continue
        deb = content / "debs" / name
        root = content / f"{package}_{full}"
        if deb.is_file() and root.is_dir() and _sha256(deb) == digest:
            return FetchedPackage(package, full, suite, deb, digest, root)
        log.warning("cached %s %s is incomplete or changed; fetching again", package, full)
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# a private apt ------------------------------------------------------------------------------
class _AptTree:
    """apt with its own configuration, sources, state and cache; nothing from the host's."""

    def __init__(self, base: Path, *, suite: str, mirror: str, keyring: Path) -> None:
        self.base = base
        for sub in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("etc/preferences.d", "etc/trusted.gpg.d", "etc/sources.list.d"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "state/status").touch()
        options = [f"signed-by={keyring}"]
        if suite in _UNSTABLE_SUITES:
            options.append("check-valid-until=no")
        (base / "etc/sources.list").write_text(f"deb [{' '.join(options)}] {mirror} {suite} main\n")
        b = str(base)
        conf = "\n".join(
            [
                f'Dir::State "{b}/state";',
                f'Dir::State::status "{b}/state/status";',
                f'Dir::Cache "{b}/cache";',
                'Dir::Cache::pkgcache "pkgcache.bin";',
                'Dir::Cache::srcpkgcache "srcpkgcache.bin";',
                f'Dir::Etc "{b}/etc";',
                f'Dir::Etc::sourcelist "{b}/etc/sources.list";',
                f'Dir::Etc::sourceparts "{b}/etc/sources.list.d";',
                f'Dir::Etc::parts "{b}/etc/apt.conf.d";',
                f'Dir::Etc::preferences "{b}/etc/preferences";',
                f'Dir::Etc::preferencesparts "{b}/etc/preferences.d";',
                f'Dir::Etc::trusted "{b}/etc/trusted.gpg";',
                f'Dir::Etc::trustedparts "{b}/etc/trusted.gpg.d";',
                'APT::Architecture "amd64";',
                'APT::Architectures { "amd64"; };',
                'Acquire::Languages "none";',
                # The downloads land in a root-owned cache; apt's _apt sandbox cannot write it.
                'APT::Sandbox::User "root";',
                "",
            ]
        )
        self.conf = base / "apt.conf"
        self.conf.write_text(conf)

    def _apt(self, argv: list[str], what: str, cwd_dir: Path | None = None) -> str:
        env = {"APT_CONFIG": str(self.conf)}
        if cwd_dir is not None:  # apt-get download writes into the working directory
            argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", str(cwd_dir), *argv]
        _, out, _ = run_host(argv, what=what, env=env, timeout=600)
        return out

    def update(self) -> None:
        self._apt(["apt-get", "-q", "update", "-o", "APT::Update::Error-Mode=any"], "apt update")

    def pick_version(self, package: str, wanted: str) -> str:
        out = self._apt(["apt-cache", "madison", package], f"apt-cache madison {package}")
        versions: list[str] = []
        for line in out.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) >= 2 and fields[0] == package and _matches(fields[1], wanted):
                versions.append(fields[1])
        if not versions:
            available = sorted({ln.split("|")[1].strip() for ln in out.splitlines() if "|" in ln})
            raise ScanError(
                f"{package} {wanted} is not in the archive's index",
                hint="versions available: " + (", ".join(available) or "none"),
            )
        return versions[0]  # madison lists the highest version first

    def download(self, package: str, full: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        self._apt(
            ["apt-get", "-q", "download", f"{package}={full}"],
            f"apt-get download {package}={full}",
            cwd_dir=dest,
        )
        # apt names the file with the epoch's colon escaped as %3a
        name_version = full.replace(":", "%3a")
        found = sorted(dest.glob(f"{package}_{name_version}_*.deb"))
        if not found:
            raise ScanError(f"apt reported success but no {package}_{full} .deb is in {dest}")
        return found[0]
