"""A team server's /v1/images/generations as the Studio calls it (engines/remote_chat.remote_images):
a hostile or broken answer is a one-line RemoteError, a cancel closes the connection at once, and
the cache of each server's models is read back bounded and typed (core/remotes)."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from desktop_app.core.cancel import CancelToken
from desktop_app.core.errors import Cancelled
from desktop_app.engines.remote_chat import RemoteError, RemoteServer, remote_images

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def serve(answer):
    """A server on loopback whose POST answers ``answer()`` (status, body bytes); a delay inside is allowed."""

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = answer()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, RemoteServer("box", f"http://127.0.0.1:{srv.server_address[1]}/v1")


def _data(*items) -> bytes:
    return json.dumps({"data": list(items)}).encode()


def test_pngs_come_back_and_other_answers_are_one_line_errors():
    answers = iter([(200, _data({"b64_json": base64.b64encode(PNG).decode()})),
                    (200, _data({"b64_json": base64.b64encode(b"GIF89a....").decode()})),
                    (200, _data({"b64_json": "%%% not base64"})),
                    (200, _data()),
                    (200, b"not json"),
                    (500, b'{"error": {"message": "CUDA out of memory"}}')])
    srv, box = serve(lambda: next(answers))
    try:
        assert remote_images(box, "m", "a fox") == [PNG]
        for expected in ("not a PNG", "not base64", "sent no image", "failed to make the image", "CUDA out of memory"):
            with pytest.raises(RemoteError) as e:
                remote_images(box, "m", "a fox")
            assert expected in str(e.value) and "\n" not in str(e.value)
    finally:
        srv.shutdown()
        srv.server_close()


def test_cancel_closes_the_connection_at_once():
    release = threading.Event()
    srv, box = serve(lambda: (release.wait(20), (200, _data()))[1])
    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            remote_images(box, "m", "slow", token)
        assert time.monotonic() - t0 < 3
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()
        time.sleep(0.2)  # the handler thread lets its socket go


def test_a_cancel_while_it_connects_does_not_wait_for_the_answer(monkeypatch):
    """Cancelled before the socket exists (during connect): the watcher closes it once it does."""
    import http.client

    release = threading.Event()
    srv, box = serve(lambda: (release.wait(20), (200, _data()))[1])
    token = CancelToken()
    real = http.client.HTTPConnection.connect

    def slow_connect(conn):
        token.cancel()
        time.sleep(0.5)  # the watcher sees the cancel while there is no socket yet
        real(conn)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", slow_connect)
    t0 = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            remote_images(box, "m", "slow", token)
        assert time.monotonic() - t0 < 3
        with pytest.raises(Cancelled):  # already cancelled: no request at all
            remote_images(box, "m", "again", token)
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()
        time.sleep(0.2)


def test_the_model_cache_is_bounded_and_typed(tmp_path):
    from desktop_app.core import remotes

    remotes._write_cache({"a": {"chat": ["x"] * 1000 + [3], "image": "nope", "error": 5, "checked": "t"},
                          "b": "junk", "c": {"chat": ["y" * 1000]}})
    got = remotes.cached_models()
    assert set(got) == {"a", "c"}
    assert len(got["a"]["chat"]) == remotes.MAX_MODELS and got["a"]["image"] == [] and got["a"]["error"] is None
    assert got["a"]["checked"] is None and len(got["c"]["chat"][0]) == 300
    assert remotes.parse_remote_id("remote:team box/org/model-7b") == ("team box", "org/model-7b")
    assert remotes.parse_remote_id("smollm2.gguf") is None and remotes.parse_remote_id("remote:/x") is None
