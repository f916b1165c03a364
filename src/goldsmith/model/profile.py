"""The profile schema: what image to build and how to harden it.

Pydantic v2 with ``extra="forbid"`` everywhere, so a misspelt key is an error, not a silent
default. Loading from YAML (positions, ``extends:``, safety limits) is in ``profile_loader``.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = r"^[a-z_][a-z0-9_-]*$"
PACKAGE_RE = r"^[a-z0-9][a-z0-9+.-]+$"
# 2026-01-01T00:00:00Z: the pinned default build date, so two builds agree bit for bit.
DEFAULT_SOURCE_DATE_EPOCH = 1767225600

PackageName = Annotated[str, Field(pattern=PACKAGE_RE)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(StrEnum):
    DEBIAN = "debian"
    UBUNTU = "ubuntu"


class Variant(StrEnum):
    # mmdebstrap variants that make sense for a server base
    ESSENTIAL = "essential"
    APT = "apt"
    REQUIRED = "required"
    MINBASE = "minbase"
    IMPORTANT = "important"
    STANDARD = "standard"


class AllowListMode(StrEnum):
    OFF = "off"  # no allow-list check
    REPORT = "report"  # report packages nobody asked for
    ENFORCE = "enforce"  # fail the build on them


class Base(Strict):
    distribution: Distribution = Distribution.DEBIAN
    suite: Annotated[str, Field(pattern=r"^[a-z]+$")] = "trixie"
    version: Annotated[str, Field(pattern=r"^[0-9.]+$")] = "13"
    mirror: Annotated[str, Field(pattern=r"^(https?|file)://\S+$")] = "http://deb.debian.org/debian"
    security_mirror: Annotated[str | None, Field(pattern=r"^(https?|file)://\S+$")] = (
        "http://deb.debian.org/debian-security"
    )
    #: extra suites from the main mirror, e.g. "trixie-updates"
    extra_suites: list[Annotated[str, Field(pattern=r"^[a-z-]+$")]] = ["trixie-updates"]
    components: list[Annotated[str, Field(pattern=r"^[a-z-]+$")]] = ["main"]
    variant: Variant = Variant.MINBASE
    architecture: Annotated[str, Field(pattern=r"^(amd64)$")] = "amd64"
    kernel: PackageName | None = "linux-image-amd64"
    #: packages installed at bootstrap time (part of the cached base)
    include: list[PackageName] = []
    source_date_epoch: Annotated[int, Field(ge=0)] = DEFAULT_SOURCE_DATE_EPOCH
    keyring: str | None = None  # host path of a keyring; None: the distribution default

    @field_validator("source_date_epoch")
    @classmethod
    def _not_future(cls, v: int) -> int:
        if v > int(dt.datetime.now(tz=dt.UTC).timestamp()) + 86400:
            raise ValueError("must not be in the future")
        return v


class Packages(Strict):
    include: list[PackageName] = []
    purge: list[PackageName] = []
    #: packages the purge list must keep even if named there (e.g. rsync if the agent needs it)
    keep: list[PackageName] = []
    allow_list: AllowListMode = AllowListMode.REPORT
    #: extra package names allowed under the allow-list besides include and their dependencies
    allow: list[PackageName] = []
    #: dpkg path-exclude for docs, man pages, locales (copyright files are kept)
    exclude_docs: bool = True

    @model_validator(mode="after")
    def _no_conflict(self) -> Packages:
        both = sorted(set(self.include) & set(self.purge))
        if both:
            raise ValueError(f"packages both included and purged: {', '.join(both)}")
        return self


class Service(Strict):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9@_.-]+$")] = "nanoclaw"
    exec_start: str = "/usr/bin/node dist/index.js"
    restart: str = "on-failure"
    environment: dict[str, str] = {}


class Agent(Strict):
    name: str = "nanoclaw"
    user: Annotated[str, Field(pattern=NAME_RE, max_length=32)] = "nanoclaw"
    group: Annotated[str, Field(pattern=NAME_RE, max_length=32)] = "nanoclaw"
    home: Annotated[str, Field(pattern=r"^/\S+$")] = "/opt/nanoclaw"
    #: a local checkout path, a git URL, or null for none at build time
    source: str | None = None
    log_dir: Annotated[str, Field(pattern=r"^/\S+$")] = "/var/log/nanoclaw"
    directories: list[Annotated[str, Field(pattern=r"^/\S+$")]] = []
    service: Service = Service()
    container_runtime: Annotated[str, Field(pattern=r"^(docker|none)$")] = "docker"


class ControlSettings(Strict):
    enabled: bool = True
    params: dict[str, Any] = {}


#: what an exception names: a goldsmith control id (``sysctl.ip-forward``) or a scanner rule id
#: (``lynis:SSH-7408``, ``openscap:sysctl_net_ipv4_ip_forward``; OpenSCAP's full
#: ``xccdf_org.ssgproject.content_rule_...`` form is accepted too)
EXCEPTION_TARGET_RE = r"^((lynis|openscap):[A-Za-z0-9][A-Za-z0-9_.:-]*|[a-z0-9][a-z0-9_.-]*)$"


class ExceptionEntry(Strict):
    control: Annotated[str, Field(min_length=1, pattern=EXCEPTION_TARGET_RE)]
    justification: Annotated[str, Field(min_length=10)]
    compensating_controls: list[str] = []
    owner: Annotated[str, Field(min_length=1)]
    approved_by: Annotated[str, Field(min_length=1)]
    expires: dt.date
    #: also except an ``error`` (the check could not run), not only a failure. Only for a
    #: check the scanner cannot evaluate where it runs (an offline probe); the justification
    #: must say where the setting is evaluated instead.
    covers_errors: bool = False


class Siem(Strict):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 6514
    protocol: Annotated[str, Field(pattern=r"^(tcp|udp|tls)$")] = "tls"


class Logging(Strict):
    siem: Siem | None = None


class Gates(Strict):
    lynis_min_hardening_index: Annotated[int, Field(ge=0, le=100)] = 90
    max_failures_not_excepted: Annotated[int, Field(ge=0)] = 0
    openscap_min_pass_rate: Annotated[float, Field(ge=0, le=100)] = 95.0
    boot_test: bool = True


SIZE_RE = r"^[0-9]+[KMG]$"


class Partition(Strict):
    mountpoint: Annotated[str, Field(pattern=r"^/\S*$")]
    #: "ext4" for a partition on the disk, "tmpfs" for a memory filesystem
    fs: Annotated[str, Field(pattern=r"^(ext4|tmpfs)$")] = "ext4"
    size: Annotated[str, Field(pattern=SIZE_RE)] = "512M"
    options: list[Annotated[str, Field(pattern=r"^[a-z0-9_=]+$")]] = ["defaults"]


def _default_partitions() -> list[Partition]:
    return [
        Partition(
            mountpoint="/tmp",
            fs="tmpfs",
            size="512M",
            options=["nodev", "nosuid", "noexec", "mode=1777"],
        ),
        Partition(
            mountpoint="/var/tmp", fs="ext4", size="256M", options=["nodev", "nosuid", "noexec"]
        ),
        Partition(
            mountpoint="/var/log", fs="ext4", size="1G", options=["nodev", "nosuid", "noexec"]
        ),
        Partition(
            mountpoint="/var/log/audit",
            fs="ext4",
            size="512M",
            options=["nodev", "nosuid", "noexec"],
        ),
    ]


class Image(Strict):
    hostname: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "nanoclaw"
    #: size of the root filesystem partition
    root_size: Annotated[str, Field(pattern=SIZE_RE)] = "3G"
    formats: list[Annotated[str, Field(pattern=r"^(raw|qcow2)$")]] = ["raw", "qcow2"]
    partitions: list[Partition] = Field(default_factory=_default_partitions)
    #: kernel command line additions
    cmdline: list[str] = ["console=ttyS0,115200n8"]

    @field_validator("partitions")
    @classmethod
    def _unique_mounts(cls, v: list[Partition]) -> list[Partition]:
        seen: set[str] = set()
        for p in v:
            if p.mountpoint in seen:
                raise ValueError(f"mountpoint {p.mountpoint} listed twice")
            if p.mountpoint == "/":
                raise ValueError("the root filesystem is not a partition entry; use root_size")
            seen.add(p.mountpoint)
        return v


class Profile(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    description: str = ""
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")] = "0.1.0"
    base: Base = Base()
    packages: Packages = Packages()
    agent: Agent = Agent()
    controls: dict[str, ControlSettings] = {}
    exceptions: list[ExceptionEntry] = []
    #: a YAML file (``exceptions: [...]``) of further exceptions, relative to the profile
    #: file that names it; read by ``goldsmith.scan.exceptions.load_exceptions``
    exceptions_file: Annotated[str, Field(min_length=1)] | None = None
    logging: Logging = Logging()
    gates: Gates = Gates()
    image: Image = Image()

    @property
    def output_name(self) -> str:
        return f"{self.name}-{self.version}"
