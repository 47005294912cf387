"""Can the Hugging Face hub be reached? Offline switches, proxies, and a probe that cannot hang."""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
DATASETS_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # what `datasets` obeys
MODELS_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # what `transformers` obeys
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def offline(variables: tuple[str, ...]) -> bool:
    """Whether any of these environment switches is on (read now, not at import)."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in variables
    )


def behind_proxy() -> bool:
    """Whether traffic goes through a proxy, where a direct connection says nothing."""
    return any(os.environ.get(v) for v in PROXY_VARS)


def reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """False when no TCP connection to the hub endpoint opens within `timeout` s, DNS included.

    True without probing behind a proxy. The DNS lookup and connect run in a daemon thread:
    getaddrinfo ignores socket timeouts, so a hanging resolver would otherwise hang the run.
    """
    if behind_proxy():
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    if not url.hostname:
        return False
    address = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])
