"""XCCDF vocabulary: the ComplianceAsCode profile ids goldsmith runs and the rule result values.

Shared by the OpenSCAP adapter (:mod:`goldsmith.scan.openscap`, which re-exports them), the
report formats and the gates, and importable without the adapter: a scan that does not run
OpenSCAP does not load it.
"""

from __future__ import annotations

from enum import StrEnum

CIS_L2_SERVER = "xccdf_org.ssgproject.content_profile_cis_level2_server"
CIS_L1_SERVER = "xccdf_org.ssgproject.content_profile_cis_level1_server"


class RuleStatus(StrEnum):
    """An XCCDF 1.2 ``rule-result/result`` value."""

    PASS = "pass"  # noqa: S105 (an XCCDF result, not a password)
    FAIL = "fail"
    ERROR = "error"
    UNKNOWN = "unknown"
    NOTAPPLICABLE = "notapplicable"
    NOTCHECKED = "notchecked"
    NOTSELECTED = "notselected"
    INFORMATIONAL = "informational"
    FIXED = "fixed"
