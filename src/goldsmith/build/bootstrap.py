"""Bootstrap the base rootfs with mmdebstrap, cached by a digest of everything that shapes it.

The base is the distribution's minimal system plus the kernel and ``base.include``, with the
documentation filter already in place (a dpkg.cfg.d file that stays in the image, so every
later install keeps excluding docs), and with the apt lists kept so the package stage can
install without another ``apt-get update``; finalize removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldsmith.build import cache
from goldsmith.errors import BuildError, ToolMissingError
from goldsmith.model.profile import Distribution, Profile

logger = logging.getLogger(__name__)

#: Bump whenever the mmdebstrap invocation or anything else below changes what a base holds;
#: it is part of the digest, so old cache entries stop matching.
RECIPE_VERSION = 2

#: Where the documentation filter lives in the image: mmdebstrap writes its --dpkgopt options
#: there, and only from that file does it also filter the Essential packages, which it
#: extracts with dpkg-deb | mmtarfilter before dpkg itself runs.
NODOC_PATH = "/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
#: dpkg filter: no docs, man/info pages, translations or lintian overrides. The last matching
#: rule wins, so the includes after the excludes keep copyright files and the locale aliases.
NODOC_RULES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
)

_DEFAULT_KEYRINGS: dict[Distribution, tuple[str, str]] = {
    Distribution.DEBIAN: (
        "/usr/share/keyrings/debian-archive-keyring.gpg",
        "debian-archive-keyring",
    ),
    Distribution.UBUNTU: ("/usr/share/keyrings/ubuntu-archive-keyring.gpg", "ubuntu-keyring"),
}

_MMDEBSTRAP_TIMEOUT = 3600.0


@dataclass(frozen=True)
class BaseArtifact:
    tarball: Path
    digest: str
    cached: bool
    seconds: float  # time this call took (a cache hit is fast)
    mmdebstrap_version: str  # the version that built the tarball


def nodoc_config() -> str:
    """Content of the dpkg.cfg.d filter file mmdebstrap writes into the image."""
    return "\n".join(NODOC_RULES) + "\n"


def digest_inputs(profile: Profile) -> dict[str, Any]:
    """Everything that determines the base, as plain JSON-able data."""
    return {
        "recipe": RECIPE_VERSION,
        "base": profile.base.model_dump(mode="json"),
        "exclude_docs": profile.packages.exclude_docs,
    }


def base_digest(profile: Profile) -> str:
    """sha256 over the canonical JSON of the inputs that determine the base."""
    canonical = json.dumps(
        digest_inputs(profile), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def source_lines(profile: Profile) -> list[str]:
    """One-line apt sources: the suite, each extra suite, and ``<suite>-security``."""
    base = profile.base
    comps = " ".join(base.components)
    lines = [f"deb {base.mirror} {base.suite} {comps}"]
    lines += [f"deb {base.mirror} {s} {comps}" for s in base.extra_suites]
    if base.security_mirror:
        lines.append(f"deb {base.security_mirror} {base.suite}-security {comps}")
    return lines


def mmdebstrap_argv(profile: Profile, output: Path, *, keyring: str) -> list[str]:
    """The full mmdebstrap command line for this profile (output format from its suffix)."""
    base = profile.base
    include = ([base.kernel] if base.kernel else []) + [p for p in base.include if p != base.kernel]
    argv = [
        "mmdebstrap",
        f"--variant={base.variant}",
        f"--architectures={base.architecture}",
        f"--components={','.join(base.components)}",
        f"--keyring={keyring}",
        # keep the apt lists: the package stage installs from them; finalize removes them
        "--skip=cleanup/apt/lists",
        "--format=tar",
    ]
    if include:
        argv.append(f"--include={','.join(include)}")
    if profile.packages.exclude_docs:
        # Written before any package is unpacked, applied to the Essential set as well, and
        # kept in the image so later installs keep excluding the same paths.
        argv += [f"--dpkgopt={rule}" for rule in NODOC_RULES]
        # no translated package descriptions in the apt lists either
        argv.append('--aptopt=Acquire::Languages "none"')
    argv += [base.suite, str(output), *source_lines(profile)]
    return argv


def mmdebstrap_version() -> str:
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise ToolMissingError("mmdebstrap", "mmdebstrap")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError("mmdebstrap --version failed", argv=[exe, "--version"], stderr=proc.stderr)
    return proc.stdout.strip().removeprefix("mmdebstrap").strip()


def bootstrap_base(profile: Profile, cache_dir: Path, *, refresh: bool = False) -> BaseArtifact:
    """The base tarball for this profile: from the cache, or bootstrapped now and cached."""
    start = time.monotonic()
    digest = base_digest(profile)
    inputs = digest_inputs(profile)
    tarball, _ = cache.entry_paths(cache_dir, digest)
    with cache.locked(cache_dir, digest):
        if not refresh:
            hit = cache.lookup(cache_dir, digest, inputs)
            if hit is not None:
                logger.info("base %s: cache hit (%s)", digest[:12], tarball)
                return BaseArtifact(
                    tarball=tarball,
                    digest=digest,
                    cached=True,
                    seconds=time.monotonic() - start,
                    mmdebstrap_version=hit.mmdebstrap_version,
                )
        version = mmdebstrap_version()
        keyring = _keyring(profile)
        with (
            cache.temp_output(cache_dir, digest, ".tar") as tmp,
            _scratch_dir(cache_dir) as scratch,
        ):
            argv = mmdebstrap_argv(profile, tmp, keyring=keyring)
            logger.info("base %s: bootstrapping %s", digest[:12], profile.base.suite)
            log_path = cache.base_dir(cache_dir) / f"{digest}.log"
            _run_mmdebstrap(argv, profile, scratch, log_path)
            seconds = time.monotonic() - start
            record = cache.CacheRecord(
                digest=digest,
                inputs=inputs,
                size=tmp.stat().st_size,
                sha256=cache.sha256_file(tmp),
                mmdebstrap_version=version,
                seconds=round(seconds, 3),
            )
            cache.publish(cache_dir, tmp, record)
    logger.info("base %s: bootstrapped in %.1f s", digest[:12], seconds)
    return BaseArtifact(
        tarball=tarball,
        digest=digest,
        cached=False,
        seconds=time.monotonic() - start,
        mmdebstrap_version=version,
    )


def unpack_base(artifact: BaseArtifact, dest: Path) -> None:
    """Extract the base into an empty directory, keeping owners, modes, xattrs (file
    capabilities), device nodes and hard links."""
    if dest.exists():
        if not dest.is_dir() or dest.is_symlink():
            raise BuildError(f"cannot unpack the base into {dest}: not a directory")
        if any(dest.iterdir()):
            raise BuildError(
                f"cannot unpack the base into {dest}: the directory is not empty",
                hint="unpack into a fresh directory",
            )
    else:
        dest.mkdir(parents=True, mode=0o755)
    tar = shutil.which("tar")
    if tar is None:
        raise ToolMissingError("tar", "tar")
    argv = [
        tar,
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "--same-owner",
        "-xpf",
        str(artifact.tarball),
        "-C",
        str(dest),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(
            f"unpacking the base {artifact.tarball} failed",
            argv=argv,
            stderr=proc.stderr,
            hint="the cached base may be damaged; rebuild it with --refresh-base",
        )


def _keyring(profile: Profile) -> str:
    if profile.base.keyring:
        if not Path(profile.base.keyring).is_file():
            raise BuildError(
                f"keyring {profile.base.keyring} does not exist",
                hint="base.keyring is a path on the build host",
            )
        return profile.base.keyring
    path, package = _DEFAULT_KEYRINGS[profile.base.distribution]
    if not Path(path).is_file():
        raise ToolMissingError(Path(path).name, package)
    return path


@contextlib.contextmanager
def _scratch_dir(cache_dir: Path) -> Iterator[Path]:
    """mmdebstrap's TMPDIR: it builds the chroot there before writing the tar, so it goes on
    the cache's filesystem rather than /tmp."""
    d = Path(tempfile.mkdtemp(prefix=".tmp-scratch-", dir=cache.base_dir(cache_dir)))
    try:
        yield d
    finally:
        if _has_mounts_under(d):
            # never rmtree through a leftover mount (a bind of /dev would delete host nodes)
            logger.warning("leaving %s in place: something is still mounted under it", d)
        else:
            shutil.rmtree(d, ignore_errors=True)


def _has_mounts_under(path: Path) -> bool:
    prefix = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return True  # cannot tell: be safe
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            mountpoint = fields[4].encode().decode("unicode_escape")
            if mountpoint.startswith(prefix) or mountpoint == prefix[:-1]:
                return True
    return False


def _run_mmdebstrap(argv: list[str], profile: Profile, scratch: Path, log_path: Path) -> None:
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise ToolMissingError("mmdebstrap", "mmdebstrap")
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "HOME", "http_proxy", "https_proxy", "no_proxy", "TERM")
    }
    env.update(
        {
            "SOURCE_DATE_EPOCH": str(profile.base.source_date_epoch),
            "TMPDIR": str(scratch),
            "LC_ALL": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
        }
    )
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            returncode = proc.wait(timeout=_MMDEBSTRAP_TIMEOUT)
        except BaseException as exc:
            # Ctrl-C or timeout: let mmdebstrap clean up its mounts, then make sure it is gone
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise BuildError(
                    f"mmdebstrap did not finish within {_MMDEBSTRAP_TIMEOUT:.0f} s",
                    argv=argv,
                    hint=f"see {log_path}; a slow mirror or a hung maintainer script",
                ) from None
            raise
    if returncode != 0:
        output = log_path.read_text(encoding="utf-8", errors="replace")
        raise BuildError(
            f"mmdebstrap failed with exit code {returncode}",
            argv=argv,
            stderr=output,
            hint=(
                f"full log: {log_path}. Check that the mirror {profile.base.mirror} is "
                "reachable and that every package in base.include and base.kernel exists "
                f"in {profile.base.suite}"
            ),
        )
