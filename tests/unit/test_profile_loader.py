"""Profile loading: shipped profiles, exact error positions, extends, safety limits, digest."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldsmith.errors import ProfileError
from goldsmith.model.profile import NAME_RE, Profile
from goldsmith.model.profile_loader import (
    MAX_BYTES,
    MAX_NODES,
    SHIPPED_PREFIX,
    LoadedProfile,
    dump_resolved_yaml,
    list_shipped,
    load_profile,
    profile_digest,
    profile_json_schema,
    shipped_path,
)

SHIPPED = ["nanoclaw-debian12", "nanoclaw-debian13", "ubuntu-2204-example"]


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


def error_of(ref: str) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(ref)
    return info.value


def where(err: ProfileError) -> tuple[str | None, int | None, int | None, str | None]:
    return err.file, err.line, err.column, err.key


# shipped profiles ------------------------------------------------------------------------------


def test_list_shipped() -> None:
    assert list_shipped() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_round_trips(name: str, tmp_path: Path) -> None:
    loaded = load_profile(name)
    assert isinstance(loaded, LoadedProfile)
    assert loaded.profile.name == name
    assert loaded.sources[-1] == f"{SHIPPED_PREFIX}{name}.yaml"
    assert re.fullmatch(r"[0-9a-f]{64}", loaded.digest)
    # the resolved YAML loads back to the same profile, and so to the same digest
    dumped = write(tmp_path / "resolved.yaml", dump_resolved_yaml(loaded.profile))
    again = load_profile(dumped)
    assert again.profile == loaded.profile
    assert again.digest == loaded.digest
    assert again.sources == (dumped,)
    assert shipped_path(name).is_file()


def test_default_profile_content() -> None:
    p = load_profile("nanoclaw-debian13").profile
    assert (p.base.distribution, p.base.suite, p.base.version) == ("debian", "trixie", "13")
    assert p.base.variant == "minbase"
    assert p.base.kernel == "linux-image-amd64"
    for pkg in ("systemd-sysv", "udev", "openssh-server", "grub-pc", "initramfs-tools"):
        assert pkg in p.base.include
    for pkg in ("nodejs", "docker.io", "auditd", "nftables", "chrony"):
        assert pkg in p.packages.include
    # AIDE comes without Recommends: no mail transport (exim4) is pulled in with it
    assert {"aide", "aide-common"} <= set(p.packages.include)
    assert "exim4-base" in p.packages.purge
    assert {"rsync", "telnet", "exim4-base", "avahi-daemon"} <= set(p.packages.purge)
    # every shipped waiver is owned, approved and time-limited (goldsmith.scan.exceptions)
    assert "sysctl.ip-forward" in {e.control for e in p.exceptions}
    assert all(e.owner and e.approved_by and e.compensating_controls for e in p.exceptions)
    assert p.output_name == "nanoclaw-debian13-0.1.0"


def test_debian12_extends_debian13() -> None:
    d13 = load_profile("nanoclaw-debian13")
    d12 = load_profile("nanoclaw-debian12")
    assert d12.sources == (
        f"{SHIPPED_PREFIX}nanoclaw-debian13.yaml",
        f"{SHIPPED_PREFIX}nanoclaw-debian12.yaml",
    )
    assert (d12.profile.base.suite, d12.profile.base.version) == ("bookworm", "12")
    assert d12.profile.base.extra_suites == ["bookworm-updates"]
    # inherited untouched
    assert d12.profile.base.include == d13.profile.base.include
    assert d12.profile.packages.purge == d13.profile.packages.purge
    assert d12.profile.image == d13.profile.image
    # Debian 12's Node 18 is too old for NanoClaw: not installed
    assert "nodejs" not in d12.profile.packages.include
    assert d12.digest != d13.digest


def test_ubuntu_example() -> None:
    p = load_profile("ubuntu-2204-example").profile
    assert (p.base.distribution, p.base.suite) == ("ubuntu", "jammy")
    assert p.base.mirror == "http://archive.ubuntu.com/ubuntu"
    assert p.base.security_mirror == "http://security.ubuntu.com/ubuntu"
    assert p.base.kernel == "linux-image-generic"


def test_unknown_shipped_name_lists_the_shipped_ones() -> None:
    err = error_of("nanoclaw-debian99")
    assert "no shipped profile named 'nanoclaw-debian99'" in err.message
    assert err.hint is not None and "nanoclaw-debian13" in err.hint


def test_missing_file() -> None:
    err = error_of("/nonexistent/dir/p.yaml")
    assert "does not exist" in err.message


def test_bare_name_of_an_existing_file_is_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "myprofile", "name: mine\n")
    monkeypatch.chdir(tmp_path)
    assert load_profile("myprofile").profile.name == "mine"


# error positions -------------------------------------------------------------------------------


def test_unknown_key_points_at_the_key(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        agent:
          user: ok
          colour: red
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 4, 3, "agent.colour")
    assert "unknown key" in err.message


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\nimage:\n  hostnme: x\n")
    err = error_of(f)
    assert where(err) == (f, 3, 3, "image.hostnme")
    assert "did you mean 'hostname'?" in err.message


def test_wrong_type(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        gates:
          boot_test: true
          lynis_min_hardening_index: lots
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 4, 3, "gates.lynis_min_hardening_index")
    assert "valid integer" in err.message


def test_number_where_a_string_is_expected_says_to_quote_it(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\nbase:\n  version: 13\n")
    err = error_of(f)
    assert where(err) == (f, 3, 3, "base.version")
    assert 'write it in quotes: "13"' in err.message


def test_pattern_failure_has_the_exact_format(tmp_path: Path) -> None:
    f = write(
        tmp_path / "my.yaml",
        """
        name: p
        agent:
          user: "Bad User"
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 3, 3, "agent.user")
    first = str(err).splitlines()[0]
    assert first == f"{f}:3:3: agent.user: String should match pattern '^[a-z_][a-z0-9_-]*$'"


def test_nested_list_item(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        image:
          partitions:
            - mountpoint: /tmp
              fs: tmpfs
            - mountpoint: /var/tmp
              fs: xfs
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 7, 7, "image.partitions[1].fs")


def test_bad_list_item_points_at_the_item(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        packages:
          include:
            - git
            - Not_A_Package
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 5, 7, "packages.include[1]")


def test_missing_required_key(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "description: no name\n")
    err = error_of(f)
    assert (err.file, err.key) == (f, "name")
    assert "required key is missing" in err.message


def test_model_level_error_points_at_the_section(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        packages:
          include: [git]
          purge: [git]
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 2, 1, "packages")
    assert "both included and purged: git" in err.message


def test_all_errors_are_reported(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        agent:
          user: "Bad"
        image:
          hostname: "Under_Score"
          formats: [raw, vmdk]
        gates:
          openscap_min_pass_rate: 101
        """,
    )
    err = error_of(f)
    lines = str(err).splitlines()
    located = [line for line in lines if line.startswith(f"{f}:")]
    assert [line.split(": ")[1] for line in located] == [
        "agent.user",
        "image.hostname",
        "image.formats[1]",
        "gates.openscap_min_pass_rate",
    ]
    assert located[1].startswith(f"{f}:5:3: ")
    assert located[2].startswith(f"{f}:6:18: ")
    assert where(err) == (f, 3, 3, "agent.user")


def test_duplicate_key_at_depth(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        image:
          hostname: a
          root_size: 3G
          hostname: b
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 5, 3, "image.hostname")
    assert "duplicate key 'hostname' (first given at line 3)" in err.message


def test_duplicate_top_level_key(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\nversion: '1'\nname: q\n")
    assert where(error_of(f)) == (f, 3, 1, "name")


def test_non_string_key(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\ncontrols:\n  42: {enabled: true}\n")
    err = error_of(f)
    assert where(err) == (f, 3, 3, "controls")
    assert "keys must be strings" in err.message


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    f = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    err = error_of(f)
    assert (err.file, err.line) == (f, 2)
    assert "aliases" in err.message


def test_any_alias_is_refused(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: &n p
        description: *n
        """,
    )
    err = error_of(f)
    assert (err.file, err.line, err.column) == (f, 2, 14)


def test_merge_key_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\nimage:\n  <<: {hostname: x}\n")
    err = error_of(f)
    assert (err.line, err.column) == (3, 3)
    assert "merge keys" in err.message


def test_python_tags_are_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: !!python/object/apply:os.system ['true']\n")
    err = error_of(f)
    assert (err.file, err.line, err.column) == (f, 1, 7)
    assert "not allowed" in err.message


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\ncontrols: " + "[" * 200 + "]" * 200 + "\n")
    err = error_of(f)
    assert "nested deeper than" in err.message
    assert (err.file, err.line) == (f, 2)


def test_node_count_is_capped(tmp_path: Path) -> None:
    items = ",".join(["1"] * (MAX_NODES + 10))
    f = write(tmp_path / "p.yaml", f"name: p\ncontrols:\n  x:\n    params:\n      l: [{items}]\n")
    assert Path(f).stat().st_size < MAX_BYTES
    err = error_of(f)
    assert (err.file, err.line) == (f, 5)
    assert f"more than {MAX_NODES} YAML nodes" in err.message


def test_oversize_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    # valid YAML, so only the size check can refuse it
    path.write_text("name: p\n" + "#" * (MAX_BYTES + 1) + "\n", encoding="utf-8")
    err = error_of(str(path))
    assert err.file == str(path)
    assert "larger than" in err.message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: p\ndescription: \xc3\xa9t\xc3\xa9 caf\xe9\n")
    err = error_of(str(path))
    assert (err.line, err.column) == (2, 21)


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        image:
          hostname: [a, b
        gates: {}
        """,
    )
    err = error_of(f)
    assert err.file == f
    assert err.line is not None and err.line >= 3
    assert err.column is not None
    assert "invalid YAML" in err.message


def test_bad_indentation_error_position(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\nimage:\n  hostname: a\n root_size: 3G\n")
    err = error_of(f)
    assert (err.file, err.line, err.column) == (f, 4, 2)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "- name: p\n")
    err = error_of(f)
    assert (err.file, err.line, err.column) == (f, 1, 1)
    assert "mapping" in err.message


def test_yaml_12_booleans(tmp_path: Path) -> None:
    # "no"/"yes"/"on" are strings, so they are rejected where a bool is expected with a
    # position, and kept verbatim where a string is expected
    f = write(tmp_path / "p.yaml", "name: p\nagent:\n  service:\n    restart: no\n")
    assert load_profile(f).profile.agent.service.restart == "no"
    g = write(tmp_path / "q.yaml", "name: p\ngates:\n  boot_test: false\n")
    assert load_profile(g).profile.gates.boot_test is False


def test_non_finite_float_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\ncontrols:\n  x:\n    params: {limit: .inf}\n")
    err = error_of(f)
    assert (err.line, err.column) == (4, 21)


# extends ---------------------------------------------------------------------------------------


def test_extends_overrides_a_single_nested_value(tmp_path: Path) -> None:
    f = write(
        tmp_path / "mine.yaml",
        """
        extends: nanoclaw-debian13
        image:
          hostname: agent-host
        """,
    )
    base = load_profile("nanoclaw-debian13")
    mine = load_profile(f)
    assert mine.profile.image.hostname == "agent-host"
    assert mine.profile.image.partitions == base.profile.image.partitions
    assert mine.profile.image.formats == base.profile.image.formats
    assert mine.profile.model_copy(update={"image": base.profile.image}) == base.profile
    assert mine.sources == (f"{SHIPPED_PREFIX}nanoclaw-debian13.yaml", f)
    assert mine.digest != base.digest


def test_readme_example(tmp_path: Path) -> None:
    f = write(
        tmp_path / "my-hosts.yaml",
        """
        # my-hosts.yaml
        extends: nanoclaw-debian13
        version: 2026.11.1
        image:
          hostname: agent-host
        packages:
          keep: [rsync]          # our backup job needs it
        """,
    )
    p = load_profile(f).profile
    assert p.output_name == "nanoclaw-debian13-2026.11.1"
    assert p.packages.keep == ["rsync"]
    assert "rsync" in p.packages.purge


def test_lists_replace(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "extends: nanoclaw-debian13\npackages:\n  include: [git]\n")
    assert load_profile(f).profile.packages.include == ["git"]


def test_plus_key_appends(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        extends: nanoclaw-debian13
        packages:
          include+: [jq]
        """,
    )
    base = load_profile("nanoclaw-debian13").profile.packages.include
    assert load_profile(f).profile.packages.include == [*base, "jq"]


def test_plus_key_without_inherited_list(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "name: p\npackages:\n  include+: [jq]\n")
    err = error_of(f)
    assert where(err) == (f, 3, 3, "packages.include+")
    assert "nothing to append to" in err.message


def test_plus_key_and_plain_key_together(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        "extends: nanoclaw-debian13\npackages:\n  include: [a1]\n  include+: [jq]\n",
    )
    err = error_of(f)
    assert (err.line, err.key) == (4, "packages.include+")


def test_error_in_appended_item_points_at_the_child(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "extends: nanoclaw-debian13\npackages:\n  include+: [Bad]\n")
    err = error_of(f)
    n = len(load_profile("nanoclaw-debian13").profile.packages.include)
    assert where(err) == (f, 3, 14, f"packages.include[{n}]")


def test_error_in_child_points_at_the_child(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "name: base\nimage:\n  hostname: ok\n  root_size: 3G\n")
    f = write(
        tmp_path / "child.yaml",
        """
        extends: ./base.yaml
        name: child
        image:
          root_size: huge
        """,
    )
    err = error_of(f)
    assert where(err) == (f, 4, 3, "image.root_size")


def test_error_inherited_from_parent_points_at_the_parent(tmp_path: Path) -> None:
    parent = write(tmp_path / "base.yaml", "name: base\nimage:\n  hostname: Bad_Host\n")
    f = write(tmp_path / "child.yaml", "extends: base.yaml\nimage:\n  root_size: 4G\n")
    err = error_of(f)
    assert where(err) == (parent, 3, 3, "image.hostname")


def test_errors_of_the_named_file_come_first(tmp_path: Path) -> None:
    parent = write(tmp_path / "z-base.yaml", "name: base\nimage:\n  hostname: Bad_Host\n")
    f = write(tmp_path / "a-child.yaml", "extends: z-base.yaml\n\n\nagent:\n  user: X\n")
    err = error_of(f)
    assert where(err) == (f, 5, 3, "agent.user")
    assert str(err).splitlines()[1].startswith(f"{parent}:3:3: image.hostname: ")


def test_extends_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", "name: base\n")
    write(tmp_path / "sub" / "child.yaml", "extends: ../base.yaml\nversion: '2'\n")
    monkeypatch.chdir("/")  # relative to the file, not to the working directory
    loaded = load_profile(str(tmp_path / "sub" / "child.yaml"))
    assert loaded.profile.output_name == "base-2"
    assert loaded.sources == (str(tmp_path / "base.yaml"), str(tmp_path / "sub" / "child.yaml"))


def test_extends_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "extends: ./b.yaml\nname: a\n")
    b = write(tmp_path / "b.yaml", "name: b\nextends: ./a.yaml\n")
    err = error_of(a)
    assert where(err) == (b, 2, 1, "extends")
    assert "extends cycle" in err.message


def test_extends_itself(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "name: a\nextends: a.yaml\n")
    assert where(error_of(a)) == (a, 2, 1, "extends")


def test_extends_missing_file(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "name: a\n\nextends: ./nope.yaml\n")
    err = error_of(a)
    assert where(err) == (a, 3, 1, "extends")
    assert "does not exist" in err.message


def test_extends_unknown_shipped_name(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "extends: nanoclaw-debian7\n")
    err = error_of(a)
    assert where(err) == (a, 1, 1, "extends")
    assert err.hint is not None and "nanoclaw-debian13" in err.hint


def test_extends_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").mkdir()
    a = write(tmp_path / "a.yaml", "extends: d.yaml\n")
    err = error_of(a)
    assert where(err) == (a, 1, 1, "extends")
    assert "is a directory" in err.message


def test_extends_must_be_a_string(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "extends: [x]\n")
    assert where(error_of(a)) == (a, 1, 1, "extends")


def test_nested_extends_is_an_unknown_key(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "name: a\nimage:\n  extends: nanoclaw-debian13\n")
    assert where(error_of(a)) == (a, 3, 3, "image.extends")


def test_child_replaces_a_parent_mapping_with_null(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "name: base\nlogging:\n  siem: {host: siem.example}\n")
    f = write(tmp_path / "c.yaml", "extends: base.yaml\nlogging:\n  siem: null\n")
    assert load_profile(f).profile.logging.siem is None


# digest and schema -----------------------------------------------------------------------------


def test_digest_is_stable_and_tracks_values(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "name: p\nimage:\n  hostname: one\n")
    # the same profile written differently: order, flow style, comments, explicit defaults
    b = write(
        tmp_path / "b.yaml",
        "# comment\nimage: {hostname: one, root_size: 3G}\nname: p\n",
    )
    c = write(tmp_path / "c.yaml", "name: p\nimage:\n  hostname: two\n")
    da, db, dc = (load_profile(x).digest for x in (a, b, c))
    assert da == db
    assert da != dc
    assert load_profile(a).digest == da
    p = load_profile(a).profile
    assert profile_digest(p) == da
    assert profile_digest(p.model_copy(update={"version": "0.1.1"})) != da


def test_json_schema() -> None:
    schema = profile_json_schema()
    text = json.dumps(schema)
    assert json.loads(text) == schema
    props = schema["properties"]
    assert set(Profile.model_fields) | {"extends"} == set(props)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name"]
    assert "$defs" in schema and "Agent" in schema["$defs"]


# properties ------------------------------------------------------------------------------------

_VALID_USER = st.from_regex(r"\A[a-z_][a-z0-9_-]{0,31}\Z")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=_VALID_USER)
def test_valid_agent_user_round_trips(tmp_path: Path, user: str) -> None:
    f = write(tmp_path / "p.yaml", f"name: p\nagent:\n  user: {json.dumps(user)}\n")
    loaded = load_profile(f)
    assert loaded.profile.agent.user == user
    again = write(tmp_path / "again.yaml", dump_resolved_yaml(loaded.profile))
    assert load_profile(again).profile.agent.user == user


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=st.text(max_size=40).filter(lambda s: re.fullmatch(NAME_RE, s) is None))
def test_invalid_agent_user_is_rejected_with_its_key_path(tmp_path: Path, user: str) -> None:
    f = write(tmp_path / "p.yaml", f"name: p\nagent:\n  user: {json.dumps(user)}\n")
    err = error_of(f)
    assert where(err) == (f, 3, 3, "agent.user")


def test_dump_is_yaml_with_schema_order() -> None:
    text = dump_resolved_yaml(load_profile("nanoclaw-debian13").profile)
    data = yaml.safe_load(text)
    assert list(data) == list(Profile.model_fields)


def test_duplicate_key_inside_a_list_item(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        """
        name: p
        image:
          partitions:
            - mountpoint: /var/log
              fs: ext4
              fs: tmpfs
        """,
    )
    assert where(error_of(f)) == (f, 6, 7, "image.partitions[0].fs")


def _node_marks(node: yaml.Node, out: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    m, e = node.start_mark, node.end_mark
    out.append((type(node).__name__, node.tag, m.line, m.column, e.line, e.column))
    if isinstance(node.value, list):
        for item in node.value:
            for sub in item if isinstance(item, tuple) else (item,):
                _node_marks(sub, out)
    else:
        out.append((node.value,))
    return out


SHIPPED_FILES = sorted((Path(__file__).parents[2] / "src/goldsmith/profiles").glob("*.yaml"))


@pytest.mark.parametrize(
    "text",
    [
        *(p.read_text() for p in SHIPPED_FILES),
        'name: x\ndescription: "ünïcödé ✓"\ncontrols:\n  a: {params: {v: "éé"}, k: [1, 2.5, no]}\n',
        "name: y\nlist:\n- |\n  block\n  text\n- 'single'\n- 2026-02-30\n",
    ],
)
def test_the_libyaml_fast_path_composes_exactly_what_the_reference_loader_does(
    text: str,
) -> None:
    from goldsmith.model import profile_loader as pl

    assert pl._FAST  # PyYAML's wheels carry libyaml; without it only the reference runs
    fast, slow = pl._FastLoader(text), pl._SafeLoader(text)
    try:
        a, b = fast.get_single_node(), slow.get_single_node()
        assert a is not None and b is not None
        assert _node_marks(a, []) == _node_marks(b, [])
    finally:
        fast.dispose()
        slow.dispose()
