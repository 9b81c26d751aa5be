"""Is the network there? One quick probe per process, before tensorflow-datasets downloads.

Without a network, ``tfds.load`` retries every URL for minutes (dozens of urllib3
``Retrying`` warnings between progress bars) before it fails. :func:`reachable` answers in
at most ``timeout`` seconds with one TCP connect to the host tensorflow-datasets fetches
from, and remembers the answer for the rest of the process.
"""

from __future__ import annotations

import os
import socket
import threading

PROBE_HOST = ("storage.googleapis.com", 443)
PROBE_TIMEOUT_S = 1.5
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")

_answer: dict = {}


def _connect(host, timeout, out):
    try:
        socket.create_connection(host, timeout=timeout).close()
        out["ok"] = True
    except Exception as e:  # noqa: BLE001 - any failure (DNS, refused, blocked) means "not reachable"
        out["ok"], out["error"] = False, f"{type(e).__name__}: {e}"


def reachable(host=PROBE_HOST, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds (cached per process).

    DNS lookups can hang far longer than a connect timeout, so the probe runs in a daemon
    thread and is given up after ``timeout`` seconds. Behind a proxy (``HTTPS_PROXY`` and
    friends set) direct connections say nothing, so the answer is True and tensorflow-datasets
    decides.

    Args:
        host: ``(hostname, port)`` to connect to (default the tensorflow-datasets bucket,
            ``storage.googleapis.com:443``).
        timeout: seconds to wait (default 1.5).

    Returns:
        True when the connection opened (or a proxy is configured), False otherwise; the reason
        of a failure is in :func:`last_error`.

    Example:
        >>> reachable()   # doctest: +SKIP
        False
    """
    if any(os.environ.get(v) for v in PROXY_VARS):
        return True
    key = (tuple(host), float(timeout))
    if key not in _answer:
        out: dict = {}
        t = threading.Thread(target=_connect, args=(tuple(host), timeout, out), daemon=True)
        t.start()
        t.join(timeout)
        if "ok" not in out:
            out = {"ok": False, "error": f"no answer within {timeout:g} s"}
        _answer[key] = out
    return _answer[key]["ok"]


def last_error(host=PROBE_HOST, timeout: float = PROBE_TIMEOUT_S) -> str:
    """Why the cached probe of ``host`` failed ("" when it succeeded or did not run)."""
    return _answer.get((tuple(host), float(timeout)), {}).get("error", "")


def clear_cache() -> None:
    """Forgets the cached answers (tests; a laptop that just got online)."""
    _answer.clear()
