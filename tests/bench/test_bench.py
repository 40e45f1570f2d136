"""`tasgen bench`: its JSON keys are the documented ones and every figure is positive.

No timing is asserted here (timings belong in the benchmark report).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tasgen_cli.app import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
TINY = {
    "name": "tiny",
    "teacher": {"stem": {"channels": 16}, "stages": [
        {"mixer": "conv", "channels": 16, "depth": 1},
        {"mixer": "conv", "channels": 32, "depth": 1, "stride": 2},
        {"mixer": "attention", "channels": 32, "depth": 1, "stride": 2, "heads": 2}]},
    "student": {"stem": {"channels": 8}, "stages": [
        {"mixer": "conv", "channels": 8, "depth": 1},
        {"mixer": "conv", "channels": 16, "depth": 1, "stride": 2},
        {"mixer": "conv", "channels": 32, "depth": 1, "stride": 2}]},
    "distill": {"method": "tas", "feature": {"dim": 16}},
    "data": {"dataset": "synthetic", "image_size": 32, "batch_size": 8, "num_samples": 40},
}


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def _documented_keys() -> set[str]:
    # The key table of docs/benchmarks.md: rows that start with a `key` in backquotes.
    return set(re.findall(r"^\| `([a-z0-9_.<>]+)` \|", DOC.read_text(), flags=re.MULTILINE))


def _bench(tmp_path: Path, spec: dict[str, Any], *args: str) -> dict[str, Any]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["bench", str(path), "--steps", "2", "--warmup", "1", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _check(result: dict[str, Any]) -> None:
    documented = _documented_keys()
    for key, value in _leaves(result).items():
        generic = re.sub(r"^methods\.[a-z]+\.", "methods.<method>.", key)
        generic = re.sub(r"^targets\.[a-z]+_vs_kd_", "targets.<method>_vs_kd_", generic)
        generic = re.sub(r"^(spread|limits|met)\.[a-z_]+?(\.q[13])?$", r"\1.<ratio>\2", generic)
        assert generic in documented, f"{key} is not documented in {DOC.name}"
        if isinstance(value, bool) or isinstance(value, str):
            continue
        assert value > 0, key


def test_bench_json_has_the_documented_keys_with_positive_values(tmp_path: Path) -> None:
    result = _bench(tmp_path, TINY)
    _check(result)
    assert set(result["methods"]) == {"tas", "kd"}
    assert {"assistant", "targets", "loader_images_per_s", "matmul_flops_per_s"} <= set(result)
    assert {"trainer_vs_bare", "tas_vs_kd_step", "tas_vs_kd_memory"} == set(result["targets"])
    assert set(result["spread"]) == {"trainer_vs_bare", "tas_vs_kd_step"}  # the timed ratios
    for name, spread in result["spread"].items():
        assert spread["q1"] <= result["targets"][name] <= spread["q3"]
    assert set(result["limits"]) == set(result["met"]) == set(result["targets"])


@pytest.mark.slow
def test_bench_compiled_steps(tmp_path: Path) -> None:
    result = _bench(tmp_path, {**TINY, "distill": {"method": "kd"}}, "--compile", "--compile-backend", "aot_eager")
    _check(result)
    assert set(result["methods"]) == {"kd"}
    assert result["methods"]["kd"]["trainer_step_compiled_s"] > 0


def test_bench_refuses_a_bad_spec_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "batch_size": 0}}))
    result = CliRunner().invoke(app, ["bench", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_memory_tricks_last_only_as_long_as_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from tasgen.bench import memory

    calls: list[tuple[str, tuple[int, ...]]] = []

    class FakeLibc:
        def mallopt(self, *args: int) -> int:
            calls.append(("mallopt", args))
            return 1

        def malloc_trim(self, *args: int) -> int:
            calls.append(("malloc_trim", args))
            return 1

    monkeypatch.setattr(memory, "_libc", FakeLibc)
    with memory.measure_memory(torch.device("cpu")) as peak:
        assert calls[0] == ("mallopt", (-3, 1 << 20))  # fixed for the block
        block = torch.ones(4_000_000)  # 15 MiB
    del block
    assert calls[-1] == ("mallopt", (-3, 128 * 1024))  # glibc's default again
    assert peak() > 0
    calls.clear()
    with pytest.raises(RuntimeError), memory.measure_memory(torch.device("cpu")):
        raise RuntimeError("a failing phase")
    assert calls[-1] == ("mallopt", (-3, 128 * 1024))


def test_interleaved_rounds_alternate_and_turn() -> None:
    import torch

    from tasgen.bench.timing import interleaved_seconds, quartiles

    order: list[str] = []
    times = interleaved_seconds({n: (lambda n=n: order.append(n)) for n in "abc"}, 4, torch.device("cpu"))
    # One step of each per round, never a block of one; each round starts one further on.
    assert order == list("abc" "bca" "cab" "abc")
    assert {n: len(t) for n, t in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)


def test_targets_are_the_documented_ones() -> None:
    from tasgen.bench import TARGETS

    rows = dict(re.findall(r"^\| `targets\.([a-z_<>]+)` \|.*\(.*target <= ([0-9.]+)\)", DOC.read_text(), re.M))
    documented = {name.replace("<method>", "tas"): float(limit) for name, limit in rows.items()}
    assert documented == TARGETS


def _fake_result(step_ratio: float) -> dict[str, Any]:
    from tasgen.bench import TARGETS

    targets = {"trainer_vs_bare": 1.01, "tas_vs_kd_step": step_ratio, "tas_vs_kd_memory": 1.1}
    return {
        "targets": targets,
        "spread": {},
        "limits": dict(TARGETS),
        "met": {name: targets[name] <= limit for name, limit in TARGETS.items()},
    }


@pytest.mark.parametrize("step_ratio, exit_code", [(1.14, 0), (1.21, 1)])
def test_check_exits_1_when_a_ratio_misses_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step_ratio: float, exit_code: int
) -> None:
    import tasgen.bench

    monkeypatch.setattr(tasgen.bench, "run_bench", lambda *args, **kwargs: _fake_result(step_ratio))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(app, ["bench", str(path), "--json", "--check"])
    assert result.exit_code == exit_code, result.output
    missed = "tas vs kd step 1.21x misses its target <= 1.15x"
    assert (missed in result.output) == (exit_code == 1)
