"""The method registry: built-in methods by name, a package's methods through entry points
(a broken one reported by name), hyper-parameters checked like the rest of the spec,
and all of it without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasgen.methods import Method, MethodError, get_method, method_names, register_method
from tasgen.spec.errors import SpecError
from tasgen.spec.load import load_spec

BUILT_IN = ["tas", "ofa", "kd", "fitnet", "crd", "dkd", "dist", "none"]


def test_built_in_methods_are_registered_with_their_sections() -> None:
    assert method_names()[: len(BUILT_IN)] == BUILT_IN
    assert get_method("dkd").params_key == ("dkd",)
    assert all(get_method(n).origin == "tasgen" for n in BUILT_IN)


def test_a_registered_method_is_refused_twice_and_names_are_checked() -> None:
    with pytest.raises(MethodError, match="already registered"):
        register_method(Method("dkd", "another DKD", "x:y"))
    with pytest.raises(MethodError, match="use letters"):
        Method("9lives", "bad name", "x:y")
    with pytest.raises(MethodError, match="unknown pairs"):
        Method("ok", "bad pair", "x:y", pairs=("student_teacher",))


def test_baseline_sections_validate_with_locations(write_spec, minimal_spec: str) -> None:
    path = write_spec(minimal_spec)
    loaded = load_spec(path, ["distill.method=dkd", "distill.dkd.beta=2"])
    assert loaded.spec.distill.method == "dkd" and loaded.spec.distill.dkd.beta == 2.0
    with pytest.raises(SpecError, match=r"--set:1:\d+: distill.crd.momentum"):
        load_spec(path, ["distill.crd.momentum=1.5"])
    with pytest.raises(SpecError, match=r"unknown method 'dkdd'.*did you mean 'dkd'"):
        load_spec(path, ["distill.method=dkdd"])


def test_options_of_a_method_without_one_are_refused(write_spec, minimal_spec: str) -> None:
    path = write_spec(minimal_spec)
    with pytest.raises(SpecError, match=r"distill.options: .*'dkd' takes no options here .*in distill.dkd"):
        load_spec(path, ["distill.options={dkd: {beta: 2}}"])
    with pytest.raises(SpecError, match=r"method 'none' has no hyper-parameters; remove options.none"):
        load_spec(path, ["distill.options={none: {}}"])


# ------------------------------------------------------------ entry points
PLUGIN = '''
from pydantic import BaseModel, ConfigDict, Field

from tasgen.methods import Method


class SquareParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    weight: float = Field(1.0, ge=0)


SQUARE = Method("square", "squared logit distance", "squareplug_torch:build", params=SquareParams)
'''


def _plugin_site(tmp_path: Path) -> Path:
    """A folder on PYTHONPATH holding two installed-looking distributions: one good, one broken."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "squareplug.py").write_text(PLUGIN)
    for dist, entry in (("squareplug", "square = squareplug:SQUARE"), ("brokenplug", "broken = brokenplug_missing:X")):
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[tasgen.methods]\n{entry}\n")
    return site


def _validate(site: Path, spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"sys.argv = ['tasgen', 'validate', {str(spec)!r}, *{list(args)!r}]\n"
        "from tasgen_cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "assert 'torch' not in sys.modules\n"
        "print('CODE', code)\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "TASGEN_CACHE_DIR": str(site / "cache")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=spec.parent)


def test_entry_point_methods_validate_and_a_broken_plugin_is_named(tmp_path: Path, write_spec, minimal_spec) -> None:
    site = _plugin_site(tmp_path)
    spec = write_spec(minimal_spec)

    ok = _validate(site, spec)  # the broken plugin does not stop a spec that does not use it
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1] == "CODE 0", ok.stderr

    square = _validate(site, spec, "--set", "distill.method=square", "--set", "distill.options={square: {weight: 3.0}}")
    assert square.stdout.splitlines()[-1] == "CODE 0", square.stdout + square.stderr

    bad = _validate(site, spec, "--set", "distill.method=square", "--set", "distill.options={square: {wieght: 3.0}}")
    assert bad.stdout.splitlines()[-1] == "CODE 2"
    assert "--set:2:" in bad.stdout + bad.stderr and "distill.options.square.wieght" in bad.stdout + bad.stderr

    broken = _validate(site, spec, "--set", "distill.method=broken")
    out = broken.stdout + broken.stderr
    assert broken.stdout.splitlines()[-1] == "CODE 2" and "Traceback" not in out
    assert "brokenplug" in out and "brokenplug_missing" in out and "did not load" in out


def test_a_plugin_entry_point_can_register_through_a_function(tmp_path: Path, write_spec, minimal_spec) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "fnplug.py").write_text(textwrap.dedent('''
        from tasgen.methods import Method, register_method

        def register():
            register_method(Method("fn-method", "registered by a function", "fnplug_torch:build"))
    '''))
    info = site / "fnplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fnplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tasgen.methods]\nfn-method = fnplug:register\n")
    result = _validate(site, write_spec(minimal_spec), "--set", "distill.method=fn-method")
    assert result.stdout.splitlines()[-1] == "CODE 0", result.stdout + result.stderr
