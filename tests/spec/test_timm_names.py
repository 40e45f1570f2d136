"""timm's model names, scanned from its source without importing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasgen.spec import _timm_names
from tasgen.spec._timm_names import scan_model_names, timm_model_names, unknown_timm_model


def test_scan_equals_timm_list_models() -> None:
    timm = pytest.importorskip("timm")
    models_dir = Path(timm.__file__).parent / "models"
    assert set(scan_model_names(models_dir)) == set(timm.list_models())


def test_names_are_cached_per_timm_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASGEN_CACHE_DIR", str(tmp_path))
    timm_model_names.cache_clear()
    try:
        names = timm_model_names()
        (cache,) = tmp_path.glob("timm-models-*.json")
        assert set(json.loads(cache.read_text())) == names
        # A second process reads the cache instead of scanning again.
        cache.write_text(json.dumps(["only_this_model"]))
        timm_model_names.cache_clear()
        assert timm_model_names() == {"only_this_model"}
    finally:
        timm_model_names.cache_clear()


def test_unknown_name_suggests_close_ones() -> None:
    assert unknown_timm_model("resnet18") is None
    assert unknown_timm_model("convnext_tiny.fb_in22k_ft_in1k") is None
    assert unknown_timm_model("hf-hub:timm/some-repo") is None
    message = unknown_timm_model("resnet1B")
    assert message is not None and message.startswith(
        "unknown timm model 'resnet1B' (close: resnet18"
    )


def test_rejects_commented_out_registrations(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "@register_model\ndef real(pretrained=False, **kwargs):\n    pass\n\n"
        "# @register_model\n# def gone(pretrained=False):\n\n"
        "    @register_model  # indented\n    def nested(**kwargs):\n        pass\n"
    )
    assert scan_model_names(tmp_path) == ["nested", "real"]


def test_without_timm_nothing_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_timm_names, "_models_dir", lambda: None)
    timm_model_names.cache_clear()
    try:
        assert unknown_timm_model("anything") is None
    finally:
        timm_model_names.cache_clear()
