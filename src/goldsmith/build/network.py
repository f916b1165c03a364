"""Networking for the image: systemd-networkd with DHCP on every wired interface.

The image has no ifupdown and no DHCP client package; networkd and resolved are part of
systemd. Enabling happens through `systemctl enable` inside the chroot, which edits unit
symlinks offline (no running systemd needed).
"""

from __future__ import annotations

from goldsmith.model.records import Change
from goldsmith.targets.base import Target

NETWORK_FILE = "/etc/systemd/network/80-goldsmith-wired.network"
NETWORK_UNITS = ("systemd-networkd.service", "systemd-resolved.service")

_WIRED = """\
# Written by goldsmith: DHCP on every wired interface (en*, eth*).
[Match]
Name=en* eth*

[Network]
DHCP=yes
# No IPv6 router advertisements unless the profile asks for IPv6 (CIS 3.3.x accept_ra).
IPv6AcceptRA=no
LinkLocalAddressing=no
"""


def configure_network(target: Target) -> list[Change]:
    changes: list[Change] = []
    before = target.read_text(NETWORK_FILE) if target.exists(NETWORK_FILE) else None
    if before != _WIRED:
        if not target.exists("/etc/systemd/network"):
            target.mkdir("/etc/systemd/network", 0o755, parents=True)
        target.write_text(NETWORK_FILE, _WIRED, mode=0o644)
        changes.append(Change("image.network", NETWORK_FILE, "content", before, _WIRED))
    for unit in NETWORK_UNITS:
        state = target.run(["systemctl", "is-enabled", unit], check=False).stdout.strip()
        if state != "enabled":
            target.run(["systemctl", "enable", unit])
            changes.append(Change("image.network", unit, "enabled", state or None, "enabled"))
    return changes
