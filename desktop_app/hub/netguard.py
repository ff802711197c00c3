"""The one door to the network: every HTTP request of the hub package goes through ``open_url``.

It checks the offline switch *before* anything else (``Settings().offline`` or
``ATELIER_OFFLINE=1``) and raises :class:`OfflineError` without creating a socket. It also applies
the proxy setting and strips the ``Authorization`` header on redirects to another host (the hub
redirects LFS downloads to a CDN).

Standard library only (``urllib``): no dependency on which HTTP client a given huggingface_hub
version uses, explicit timeouts, and the proxy is per call rather than process-global.
"""

from __future__ import annotations

import logging
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Mapping

from desktop_app.core.errors import OfflineError
from desktop_app.core.settings import Settings

log = logging.getLogger("atelier.hub.net")

USER_AGENT = "Atelier/0.1 (offline desktop studio)"
OFFLINE_MESSAGE = (
    "Offline mode is on, so Atelier makes no network calls. Turn 'Offline' off in Settings "
    "(and unset ATELIER_OFFLINE) to use the hub."
)


def is_offline(settings: Settings | None = None) -> bool:
    return (settings or Settings()).offline


def ensure_online(settings: Settings | None = None) -> None:
    """Raise OfflineError at once when the offline switch is on."""
    if is_offline(settings):
        raise OfflineError(OFFLINE_MESSAGE)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Used for HEAD requests: we want the hub's own headers (X-Linked-Etag…), not the CDN's."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


class _SafeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never send the hub token to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).netloc
            new_host = urllib.parse.urlsplit(new.full_url).netloc
            if old_host != new_host:
                for k in list(new.headers):
                    if k.lower() == "authorization":
                        del new.headers[k]
                new.unredirected_hdrs.pop("Authorization", None)
        return new


def _opener(proxy: str, follow_redirects: bool) -> urllib.request.OpenerDirector:
    handlers: list = []
    if proxy:
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    handlers.append(_SafeRedirect() if follow_redirects else _NoRedirect())
    return urllib.request.build_opener(*handlers)


def open_url(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    follow_redirects: bool = True,
    settings: Settings | None = None,
):
    """Open ``url`` and return the response (an ``http.client.HTTPResponse``-like object).

    Raises OfflineError before any socket exists when offline; ``urllib.error.HTTPError`` for
    HTTP errors (callers map them to user messages); ``OSError`` subclasses for network failures.
    A 3xx answer to a non-following request is returned as the HTTPError's response object.
    """
    settings = settings or Settings()
    ensure_online(settings)
    req = urllib.request.Request(url, method=method)
    req.add_header("User-Agent", USER_AGENT)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    log.debug("%s %s", method, url)  # never the headers: they may hold the token
    opener = _opener(str(settings.get("proxy") or ""), follow_redirects)
    try:
        return opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if not follow_redirects and 300 <= exc.code < 400:
            return exc  # carries .headers/.code/.status like a response
        raise


def abort_response(resp) -> None:
    """Unblock a read in progress on ``resp`` from another thread (pause/cancel/shutdown).

    Shutting the socket down makes a blocked ``recv`` return at once; closing alone may not.
    """
    try:
        sock = resp.fp.raw._sock  # http.client.HTTPResponse -> SocketIO -> socket
        sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # already closed, not a socket response, platform quirk: best effort
        pass
