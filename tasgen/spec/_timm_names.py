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

from .home import expand_user

# `@register_model` directly above a `def`, both at the start of a line, so that
# commented-out registrations do not count.
_REGISTERED = re.compile(
    r"^[ \t]*@register_model[ \t]*(?:#[^\n]*)?\n[ \t]*def[ \t]+(\w+)[ \t]*\(", re.M
)

# Names timm resolves without its registry (hub and local weights).
_EXTERNAL_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")

# Keys of `default_cfgs` dictionaries: 'arch.tag': _cfg(...)
_PRETRAINED_TAG = re.compile(r"""['"]([a-z0-9_]+)\.([a-z0-9_]+)['"]\s*:""")

# hf-hub:ORG/NAME, optionally @revision (timm's own syntax).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def cache_dir() -> Path:
    """The folder of tasgen's caches: ``$TASGEN_CACHE_DIR`` or ``~/.cache/tasgen``."""
    env = os.environ.get("TASGEN_CACHE_DIR")
    return expand_user(env) if env else Path.home() / ".cache" / "tasgen"


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


@lru_cache(maxsize=1)
def timm_pretrained_tags() -> dict[str, frozenset[str]]:
    """``{arch: {tag, ...}}`` of the ``default_cfgs`` written out in timm's source.

    Some architectures build their tags in code; they are absent here, so a tag is
    only refused for an architecture that has tags listed.
    """
    models = _models_dir()
    if models is None:
        return {}
    tags: dict[str, set[str]] = {}
    for source in models.glob("*.py"):
        for arch, tag in _PRETRAINED_TAG.findall(source.read_text(encoding="utf-8", errors="replace")):
            tags.setdefault(arch, set()).add(tag)
    return {arch: frozenset(found) for arch, found in tags.items()}


def local_dir_config(path: str) -> dict:
    """The ``config.json`` of a timm model folder (``save_for_hf`` layout).

    Raises:
        ValueError: the folder, its config.json or the config's architecture is missing.
    """
    folder = expand_user(path)
    config_file = folder / "config.json"
    if not folder.is_dir():
        raise ValueError(f"local-dir model folder not found: {folder}")
    if not config_file.is_file():
        raise ValueError(
            f"{folder} has no config.json: a timm model folder holds config.json and model.safetensors "
            "(timm's save_for_hf, or `tasgen export RUN --format timm`)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{config_file} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(f"{config_file} names no 'architecture' (a timm model name)")
    return config


def _external_model(name: str) -> str | None:
    source, _, rest = name.partition(":")
    if source == "local-dir":
        try:
            config = local_dir_config(rest)
        except ValueError as exc:
            return str(exc)
        arch = config["architecture"]
        problem = unknown_timm_model(arch)
        return f"{name}: config.json names {problem}" if problem else None
    if not _HUB_ID.match(rest):
        return f"{name!r} is not a Hub model id: write hf-hub:ORG/NAME (optionally @REVISION)"
    return None  # whether the repo exists needs the network: checked when the model is built


def unknown_timm_model(name: str) -> str | None:
    """Say why ``name`` is not a timm model, or None when it is (or timm is absent).

    Accepted: registry names, pretrained tags (``vit_small_patch16_224.augreg_in21k``,
    checked against the tags timm lists), ``hf-hub:ORG/NAME`` (its form only; the
    Hub is not asked) and ``local-dir:PATH`` (its ``config.json`` is read).
    """
    names = timm_model_names()
    if names is None:
        return None
    if name.startswith(_EXTERNAL_PREFIXES):
        return _external_model(name)
    arch, _, tag = name.partition(".")
    if arch in names:
        known = timm_pretrained_tags().get(arch)
        if not tag or not known or tag in known:
            return None
        close = difflib.get_close_matches(tag, known, n=3, cutoff=0.5)
        listed = ", ".join(close or sorted(known)[:5])
        return f"timm has no pretrained tag {tag!r} for {arch} (its tags include: {listed})"
    close = difflib.get_close_matches(arch, names, n=3, cutoff=0.6)
    hint = f" (close: {', '.join(close)})" if close else " (see timm.list_models())"
    return f"unknown timm model {name!r}{hint}"


def hub_model_error(name: str, exc: BaseException) -> str | None:
    """A clear line for an ``hf-hub:`` model that could not be fetched, or None for other failures."""
    if not name.startswith(("hf-hub:", "hf_hub:")):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"cannot fetch {name} from the Hugging Face Hub ({first}). Offline? Run once with network to fill "
        "the Hugging Face cache (then HF_HUB_OFFLINE=1 works offline), or download the model folder and "
        "write timm: local-dir:PATH"
    )
