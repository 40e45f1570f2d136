"""timm's model names, read from its source so that validation never imports torch."""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
from functools import lru_cache
from pathlib import Path

# `@register_model` directly above a `def`, both at the start of a line, so that
# commented-out registrations do not count.
_REGISTERED = re.compile(
    r"^[ \t]*@register_model[ \t]*(?:#[^\n]*)?\n[ \t]*def[ \t]+(\w+)[ \t]*\(", re.M
)

# Names timm resolves without its registry (hub and local weights).
_EXTERNAL_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def cache_dir() -> Path:
    """The folder of tasgen's caches: ``$TASGEN_CACHE_DIR`` or ``~/.cache/tasgen``."""
    env = os.environ.get("TASGEN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tasgen"


def _models_dir() -> Path | None:
    found = importlib.util.find_spec("timm")  # locates the package without importing it
    if found is None or not found.submodule_search_locations:
        return None
    models = Path(next(iter(found.submodule_search_locations))) / "models"
    return models if models.is_dir() else None


def scan_model_names(models_dir: Path) -> list[str]:
    """The names registered with ``@register_model`` in ``models_dir/*.py``, sorted."""
    names: set[str] = set()
    for source in models_dir.glob("*.py"):
        names.update(_REGISTERED.findall(source.read_text(encoding="utf-8", errors="replace")))
    return sorted(names)


@lru_cache(maxsize=1)
def timm_model_names() -> frozenset[str] | None:
    """Every model name of the installed timm (as ``timm.list_models()``), or None without timm.

    The list is cached as JSON keyed by timm's version and install folder.
    """
    models = _models_dir()
    if models is None:
        return None
    version = importlib.metadata.version("timm")
    where = hashlib.sha1(str(models.resolve()).encode()).hexdigest()[:8]
    cache = cache_dir() / f"timm-models-{version}-{where}.json"
    try:
        return frozenset(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    names = scan_model_names(models)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(names))
        os.replace(partial, cache)  # atomic: parallel runs never read half a file
    except OSError:
        pass  # a read-only home only costs a rescan
    return frozenset(names)


def unknown_timm_model(name: str) -> str | None:
    """Say why ``name`` is not a timm model, or None when it is (or timm is absent).

    A pretrained tag (``vit_small_patch16_224.augreg_in21k``) is accepted.
    """
    names = timm_model_names()
    if names is None or name.startswith(_EXTERNAL_PREFIXES):
        return None
    arch = name.split(".", 1)[0]
    if arch in names:
        return None
    close = difflib.get_close_matches(arch, names, n=3, cutoff=0.6)
    hint = f" (close: {', '.join(close)})" if close else " (see timm.list_models())"
    return f"unknown timm model {name!r}{hint}"
