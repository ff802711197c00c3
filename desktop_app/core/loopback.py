"""Whether a host name or address means this machine (Qt-free). One rule for both sides: the
server (``atelier serve`` and File › Local server need an API key off loopback) and the client (the
offline switch lets only loopback servers through).

Strict on purpose: ``localhost`` and loopback IP literals only. A name such as ``box.localhost``
is left out: RFC 6761 reserves it, but glibc without systemd-resolved asks DNS for it, so under
the offline switch it could reach another machine."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    host = (host or "").strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
