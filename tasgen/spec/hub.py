"""Whether the Hugging Face Hub can be reached, found out in seconds.

Without a network, ``datasets`` retries the Hub for about half a minute and then
raises an error that the class count turned into "set num_classes". A dataset named
by its Hub id is checked here first: one TCP connection to the Hub, with a short
timeout, tells the user the real cause at once.
"""

from __future__ import annotations

import os
import re
import socket
from urllib.parse import urlsplit

__all__ = ["HubUnreachable", "hub_problem", "offline_mode", "unreachable_message"]

# Long enough for a slow but working network, short next to datasets' ~30 s of retries.
_PROBE_SECONDS = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}
# A Hub dataset id: NAME or ORG/NAME (huggingface_hub's validate_repo_id, simplified).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class HubUnreachable(ValueError):
    """A Hugging Face Hub dataset cannot be read because the Hub cannot be reached (no network, offline mode)."""


def offline_mode() -> bool:
    """Offline mode is on (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE``): datasets reads its cache only."""
    return any(os.environ.get(var, "").upper() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def unreachable_message(name: str, reason: str) -> str:
    """The one sentence for a Hub dataset that cannot be reached: the cause, then the ways on."""
    if offline_mode():
        return (
            f"cannot read hfds {name!r} from the Hugging Face Hub: {reason}. Offline mode is on (HF_HUB_OFFLINE or "
            "HF_DATASETS_OFFLINE) and the dataset is not in the Hugging Face cache: unset it to download the "
            "dataset, or download it elsewhere and set data.name to its local folder"
        )
    return (
        f"cannot read hfds {name!r} from the Hugging Face Hub: {reason}. Connect to the network; or download the "
        "dataset elsewhere and set data.name to its local folder; or, when it is in the Hugging Face cache "
        "already, set HF_HUB_OFFLINE=1"
    )


def hub_problem(name: str) -> str | None:
    """Why the Hub dataset ``name`` cannot be read now, or None when it may be.

    A local folder or a path, offline mode (datasets answers from its cache at
    once) and a proxy (which a direct connection would not go through) are not probed.

    Args:
        name: ``data.name`` of an hfds spec: a Hub id or a local folder.

    Returns:
        The message for `HubUnreachable`, or None.
    """
    if not _HUB_ID.fullmatch(name) or os.path.exists(name) or offline_mode():
        return None  # a path (./x, /x, ~/x, a/b/c) is a local folder: datasets says at once if it is missing
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_SECONDS):
            return None
    except OSError as err:  # gaierror (no DNS), timeout, refused, unreachable network
        reason = err.strerror or str(err) or type(err).__name__
        return unreachable_message(name, f"{host}:{port} cannot be reached ({reason})")
