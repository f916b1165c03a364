"""AppArmor profile texts for the apparmor-profiles tests, copied from Debian 13's apparmor
4.1 package (/etc/apparmor.d of a built image), and a fake /etc/apparmor.d holding them."""

from __future__ import annotations

from pathlib import Path

from controls_fixtures import write

#: /etc/apparmor.d/unix-chkpwd (apparmor 4.1.0-1): complain mode
UNIX_CHKPWD = """\
# apparmor.d - Full set of apparmor profiles
# Copyright (C) 2019-2021 Mikhail Morfikov
# SPDX-License-Identifier: GPL-2.0-only

# The apparmor.d project comes with several variables and abstractions
# that are not part of upstream AppArmor yet. Therefore this profile was
# adopted to use abstractions and variables that are available.
# Copyright (C) Christian Boltz 2024

abi <abi/4.0>,

include <tunables/global>

profile unix-chkpwd /{,usr/}{,s}bin/unix_chkpwd flags=(complain) {
  include <abstractions/base>
  include <abstractions/nameservice>

  # To write records to the kernel auditing log.
  capability audit_write,

  network netlink raw,

  /{,usr/}{,s}bin/unix_chkpwd mr,

  /etc/shadow r,

  # systemd userdb, used in nspawn
  /run/host/userdb/*.user r,
  /run/host/userdb/*.user-privileged r,

  # file_inherit
  owner /dev/tty[0-9]* rw,

  include if exists <local/unix-chkpwd>
}
"""

#: /etc/apparmor.d/runc (apparmor 4.1.0-1): unconfined, only there to grant userns
RUNC = """\
# This profile allows everything and only exists to give the
# application a name instead of having the label "unconfined"

abi <abi/4.0>,
include <tunables/global>

profile runc /usr/{bin,sbin}/runc flags=(unconfined) {
  userns,

  # Site-specific additions and overrides. See local/README for details.
  include if exists <local/runc>
}
"""

#: /etc/apparmor.d/usr.sbin.chronyd (chrony 4.6.1), abridged: enforcing, with a flags list
CHRONYD = """\
# vim:syntax=apparmor
# Last Modified: Sun Sep 05 16:48:05 2021

abi <abi/3.0>,

#include <tunables/global>

/usr/sbin/chronyd flags=(attach_disconnected) {
  #include <abstractions/base>
  #include <abstractions/nameservice>

  /usr/sbin/chronyd mr,

  # Site-specific additions and overrides. See local/README for details.
  include if exists <local/usr.sbin.chronyd>
}
"""

#: the shape of /etc/apparmor.d/sbuild and Xorg: complain among other flags
SBUILD = """\
# This profile allows everything and only exists to give the
# application a name instead of having the label "unconfined"

abi <abi/4.0>,
include <tunables/global>

profile sbuild /usr/bin/sbuild flags=(complain,attach_disconnected mediate_deleted) {
  allow all,

  userns,

  # override default pix
  /usr/bin/unshare ix,

  # Site-specific additions and overrides. See local/README for details.
  include if exists <local/sbuild>
}
"""


def apparmor_dir(root: Path) -> None:
    """A small stock /etc/apparmor.d: one complain, one unconfined, one enforcing profile,
    the package's directories, and the empty disable/ and force-complain/."""
    write(root, "/etc/apparmor.d/unix-chkpwd", UNIX_CHKPWD)
    write(root, "/etc/apparmor.d/runc", RUNC)
    write(root, "/etc/apparmor.d/usr.sbin.chronyd", CHRONYD)
    write(root, "/etc/apparmor.d/tunables/global", "include <tunables/home>\n")
    write(root, "/etc/apparmor.d/abstractions/base", "  /etc/ld.so.cache r,\n")
    write(root, "/etc/apparmor.d/local/README", "# Site-specific additions\n")
    for d in ("abi", "disable", "force-complain"):
        (root / "etc/apparmor.d" / d).mkdir(parents=True, exist_ok=True)
