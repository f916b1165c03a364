"""Rule type names to rule classes, and building a rule from catalogue/profile data.

``build_rule({"type": "sysctl", "key": "net.ipv4.ip_forward", "value": "0"})``. Params are
validated against the rule's dataclass fields (pydantic, unknown keys refused); every error
names the offending key, e.g. ``controls.sysctl.ip-forward.params.value``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from goldsmith.controls.base import Rule
from goldsmith.controls.rules.account_db import AccountDbRule
from goldsmith.controls.rules.accounts import GroupRule, UserRule
from goldsmith.controls.rules.apparmor_profiles import AppArmorProfilesRule
from goldsmith.controls.rules.audit_rules import AuditRulesRule
from goldsmith.controls.rules.banner import BannerRule
from goldsmith.controls.rules.config_option import ConfigOptionRule
from goldsmith.controls.rules.cron_at import CronAtPermissionsRule
from goldsmith.controls.rules.directory import DirectoryRule
from goldsmith.controls.rules.file_content import FileContentRule
from goldsmith.controls.rules.file_mode import FileModeRule
from goldsmith.controls.rules.kernel_module import KernelModuleRule
from goldsmith.controls.rules.managed_file import ManagedFileRule
from goldsmith.controls.rules.mount_options import MountOptionsRule
from goldsmith.controls.rules.package import PackageRule
from goldsmith.controls.rules.pam import PamRule
from goldsmith.controls.rules.service import ServiceRule
from goldsmith.controls.rules.sysctl import SysctlRule
from goldsmith.controls.rules.systemd_dropin import SystemdDropinRule
from goldsmith.controls.rules.tree_scan import TreeScanRule
from goldsmith.errors import ProfileError

_CLASSES: tuple[type[Rule], ...] = (
    SysctlRule,
    ConfigOptionRule,
    ManagedFileRule,
    FileModeRule,
    PackageRule,
    ServiceRule,
    KernelModuleRule,
    MountOptionsRule,
    AuditRulesRule,
    UserRule,
    GroupRule,
    DirectoryRule,
    SystemdDropinRule,
    PamRule,
    CronAtPermissionsRule,
    BannerRule,
    AccountDbRule,
    FileContentRule,
    TreeScanRule,
    AppArmorProfilesRule,
)

RULE_TYPES: Mapping[str, type[Rule]] = {c.type_name: c for c in _CLASSES}


@cache
def _adapter(cls: type[Rule]) -> TypeAdapter[Rule]:
    return TypeAdapter(cls)


def build_rule(spec: Mapping[str, Any], *, control: str = "", key: str = "rule") -> Rule:
    """Build a rule from ``{type: ..., **params}``. Raises ProfileError naming the bad key."""
    if not isinstance(spec, Mapping):
        raise ProfileError("must be a mapping with a 'type' key", key=key)
    type_name = spec.get("type")
    if not isinstance(type_name, str):
        raise ProfileError(
            "missing rule type", key=f"{key}.type", hint="known types: " + ", ".join(RULE_TYPES)
        )
    cls = RULE_TYPES.get(type_name)
    if cls is None:
        raise ProfileError(
            f"unknown rule type {type_name!r}",
            key=f"{key}.type",
            hint="known types: " + ", ".join(RULE_TYPES),
        )
    params = {k: v for k, v in spec.items() if k != "type"}
    if "control" in params:
        raise ProfileError("'control' is set by the catalogue, not a param", key=f"{key}.control")
    try:
        rule = _adapter(cls).validate_python(params)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if p != cls.__name__)
        msg = err["msg"]
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            msg = f"unknown param for rule type {type_name!r}"
        raise ProfileError(
            msg,
            key=f"{key}.{loc}" if loc else key,
            hint=f"params of {type_name}: " + ", ".join(_param_names(cls)),
        ) from None
    return rule.with_control(control)


def _param_names(cls: type[Rule]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "control"]
