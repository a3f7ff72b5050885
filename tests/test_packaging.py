"""The pins in envs/*.yaml agree with pyproject.toml and requirements.lock."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml


def _pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+).*", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


@pytest.mark.parametrize("env", ["bulk", "singlecell"])
def test_env_pins_match_pyproject(repo, env):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    pinned = _pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pinned.update(_pins(extra))
    spec = yaml.safe_load((repo / "envs" / f"{env}.yaml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    env_pins = _pins(pip)
    assert env_pins, f"envs/{env}.yaml pins nothing"
    for name, version in env_pins.items():
        assert pinned.get(name) == version, f"envs/{env}.yaml pins {name}=={version}, pyproject {pinned.get(name)}"


def test_lock_matches_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    lock = _pins((repo / "requirements.lock").read_text().splitlines())
    for name, version in _pins(project["dependencies"]).items():
        assert lock.get(name) == version, f"requirements.lock has {name}=={lock.get(name)}, pyproject {version}"


def test_report_categories_are_numbered_once_in_order(repo):
    """Every report category of workflow/rules is numbered once, 00, 01, ... without gaps, two digits each: the
    report's menu sorts category names as text, so "10." would otherwise come before "2."."""
    import re

    text = "\n".join(p.read_text() for p in sorted((repo / "workflow" / "rules").glob("*.smk")))
    names = set(re.findall(r'^[A-Z_]+ = "(\d+\. [^"]+)"$', text, flags=re.M))
    names |= set(re.findall(r'(?<!sub)category="(\d+\. [^"]+)"', text))
    numbers = sorted(n.split(".", 1)[0] for n in names)
    assert len(names) >= 11 and all(len(n) == 2 for n in numbers), names
    assert [int(n) for n in numbers] == list(range(len(names))), sorted(names)
    assert not re.findall(r'(?<!sub)category="(?!\d\d\. )', text)  # a literal category is numbered too
