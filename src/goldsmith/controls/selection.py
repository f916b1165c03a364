"""What resolving a profile needs of it, as plain data: :class:`Selection`.

Its own light module: the parent process of ``goldsmith scan`` builds one from the profile and
sends it to the check worker (:mod:`goldsmith.checkworker`) without loading the rule modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from goldsmith.model.profile import Profile
    from goldsmith.model.profile_loader import LoadedProfile


@dataclass(frozen=True)
class Selection:
    """Per control the profile names, whether it is enabled and its params; and where the
    profile wrote each ``controls.`` key (for errors naming file and line)."""

    #: control id -> (enabled, params)
    controls: Mapping[str, tuple[bool, Mapping[str, Any]]]
    #: key path -> (file, line, column), the ``controls.`` keys of ``LoadedProfile.positions``
    positions: Mapping[str, tuple[str, int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, profile: Profile, loaded: LoadedProfile | None = None) -> Selection:
        return cls(
            controls={cid: (s.enabled, dict(s.params)) for cid, s in profile.controls.items()},
            positions={
                k: v
                for k, v in (loaded.positions if loaded else {}).items()
                if k[:9] == "controls."
            },
        )
