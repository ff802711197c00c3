"""One loopback rule for the server's API-key check and the client's offline switch."""

import socket

import pytest

from desktop_app.core.errors import AtelierError, OfflineError
from desktop_app.core.loopback import is_loopback
from desktop_app.core.remotes import blocked_offline


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.8.9.1", "::1", "[::1]"])
def test_this_machine(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["", None, "0.0.0.0", "10.0.0.1", "::", "box.localhost", "localhost.evil.example",
                                  "127.0.0.1.nip.io", "example.com", "[::2]"])
def test_not_this_machine(host):
    assert not is_loopback(host)


def test_offline_lets_only_loopback_servers_through_and_opens_no_socket(monkeypatch):
    from desktop_app.engines.remote_chat import RemoteServer

    assert blocked_offline("http://box.localhost:8000/v1", True)  # DNS may send it elsewhere
    assert not blocked_offline("http://box.localhost:8000/v1", False)
    assert not blocked_offline("http://[::1]:8000/v1", True)

    def no_socket(*a, **k):
        raise AssertionError("a socket was opened under the offline switch")

    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_socket)
    with pytest.raises(OfflineError, match="Offline mode is on"):
        RemoteServer("far", "http://box.localhost:8000").models()


def test_serve_needs_a_key_off_loopback():
    from desktop_app.commands.serve import build

    with pytest.raises(AtelierError, match="needs an API key"):
        build("box.localhost", None)
