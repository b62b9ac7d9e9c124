"""Each ``library/cloud_*`` module's DOCUMENTATION (with the shared ``cirrus_cloud`` doc
fragment it extends) matches its argument spec: every option documented with its type, default,
choices and required flag, and nothing documented that the module does not take."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.processes import REPO_ROOT

MODULES = [
    ("cloud_network", "NetworkModule"),
    ("cloud_server", "ServerModule"),
    ("cloud_volume", "VolumeModule"),
]


def _load(path: Path, module_name: str) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _options(documentation: dict[str, Any]) -> dict[str, Any]:
    """The module's own options merged with those of the fragments it extends."""
    options = dict(documentation.get("options") or {})
    for name in documentation.get("extends_documentation_fragment") or []:
        fragment = _load(REPO_ROOT / "plugins" / "doc_fragments" / f"{name}.py", f"frag_{name}")
        shared = yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"]
        assert not set(shared) & set(options), f"{name}: options documented twice"
        options.update(shared)
    return options


def _compare(documented: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    problems = [f"{where}{n}: documented, not in the spec" for n in documented if n not in spec]
    for name, option in spec.items():
        doc = documented.get(name)
        if doc is None:
            problems.append(f"{where}{name}: in the spec, not documented")
            continue
        for key, empty in (("type", "str"), ("default", None), ("choices", None)):
            if option.get(key, empty) != doc.get(key, empty):
                problems.append(f"{where}{name}: {key} {option.get(key)} != {doc.get(key)}")
        if bool(option.get("required")) != bool(doc.get("required")):
            problems.append(f"{where}{name}: required differs")
        if option.get("elements") != doc.get("elements"):
            problems.append(f"{where}{name}: elements differ")
        if "options" in option:
            problems += _compare(doc.get("suboptions") or {}, option["options"], f"{name}.")
    return problems


@pytest.mark.parametrize(("name", "class_name"), MODULES)
def test_the_documentation_matches_the_argument_spec(
    monkeypatch: pytest.MonkeyPatch, name: str, class_name: str
) -> None:
    utils = _load(REPO_ROOT / "module_utils" / "cirrus_cloud.py", "cirrus_cloud_under_test")
    monkeypatch.setitem(sys.modules, "ansible.module_utils.cirrus_cloud", utils)
    module = _load(REPO_ROOT / "library" / f"{name}.py", f"{name}_under_test")
    documentation = yaml.safe_load(module.DOCUMENTATION)
    spec = utils.cloud_argument_spec(getattr(module, class_name).argument_spec)
    assert _compare(_options(documentation), spec, "") == []
    yaml.safe_load(module.EXAMPLES)
    returned = yaml.safe_load(module.RETURN)
    assert all("sample" in value for value in returned.values())
    assert ast.parse((REPO_ROOT / "library" / f"{name}.py").read_text())


def test_ansible_doc_renders_every_module_with_the_fragment() -> None:
    """ansible-doc (as an operator reads the docs) finds the fragment through ansible.cfg."""
    import os
    import subprocess

    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")}
    for name, _ in MODULES:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-doc"), "--json", name],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        options = next(iter(yaml.safe_load(result.stdout).values()))["doc"]["options"]
        assert {"cloud", "auth", "api_timeout", "name"} <= set(options), name
