"""A remote chat engine (Qt-free): any server that speaks the OpenAI API (vLLM, llama.cpp's
server, Ollama, another Atelier's ``atelier serve``), streamed as ChatEvents like the local
engine's, so that history, stop, ``<think>`` display and stats work the same.

HTTP with the standard library's ``http.client`` (no new dependency): a short connect timeout
(an unreachable server is a clear error at once, not a hang), a longer read timeout (a big model
takes a while to read the prompt). A server that dies mid-reply raises :class:`RemoteError` after
the text already streamed (the caller keeps it). The offline switch blocks every server outside
this machine; loopback stays allowed. The API key, when there is one, is sent only to its server.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Iterator

from desktop_app.core.errors import AtelierError, OfflineError
from desktop_app.core.loopback import is_loopback
from desktop_app.engines.chat_types import ChatEvent, ChatStats, SamplingParams

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 300.0


class RemoteError(AtelierError):
    """The server could not be reached, or failed or vanished mid-reply."""


def normalise_url(url: str) -> str:
    """``http(s)://host[:port][/path]`` ending in ``/v1`` (added when missing); else AtelierError."""
    u = urllib.parse.urlsplit((url or "").strip())
    if u.scheme not in ("http", "https") or not u.hostname:
        raise AtelierError(f"{url!r} is not a server address: use http://HOST:PORT/v1 (or https://…).")
    path = u.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urllib.parse.urlunsplit((u.scheme, u.netloc, path, "", ""))


@dataclass
class RemoteServer:
    name: str
    base_url: str
    api_key: str | None = None

    def __post_init__(self) -> None:
        self.base_url = normalise_url(self.base_url)
        self._u = urllib.parse.urlsplit(self.base_url)

    @property
    def loopback(self) -> bool:
        return is_loopback(self._u.hostname)

    def _check_offline(self) -> None:
        if self.loopback:
            return
        from desktop_app.core.settings import Settings

        if Settings().offline:
            raise OfflineError(f"Offline mode is on: the server {self.name} ({self._u.hostname}) is outside this "
                               "machine, so Atelier does not contact it. Turn Offline off in Settings to use it.")

    def _request(self, method: str, path: str, body: dict | None = None, opened=None):
        """(connection, response) once the server answered; ``opened(conn)`` is called as soon as
        the connection exists (a watcher may then close it to cancel a long wait)."""
        self._check_offline()
        cls = http.client.HTTPSConnection if self._u.scheme == "https" else http.client.HTTPConnection
        conn = cls(self._u.hostname, self._u.port, timeout=CONNECT_TIMEOUT)
        if opened is not None:
            opened(conn)
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "User-Agent": "Atelier/0.1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            conn.connect()
            conn.sock.settimeout(READ_TIMEOUT)
            conn.request(method, self._u.path + path, body=json.dumps(body).encode() if body is not None else None,
                         headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RemoteError(f"Cannot reach the server {self.name} at {self.base_url}: "
                              f"{getattr(exc, 'strerror', None) or exc}. Check that it runs, then retry.") from exc
        if resp.status >= 400:
            detail = resp.read(4000).decode("utf-8", "replace")
            conn.close()
            try:
                detail = json.loads(detail)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                detail = detail.strip()[:300] or resp.reason
            if resp.status == 401:
                raise RemoteError(f"The server {self.name} refused the API key (401): {detail}")
            raise RemoteError(f"The server {self.name} answered {resp.status}: {detail}")
        return conn, resp

    def models(self) -> list[str]:
        """The model ids the server lists (GET /v1/models)."""
        return [mid for mid, _task in self.model_entries()]

    def model_entries(self) -> list[tuple[str, str]]:
        """(id, task) of each model the server lists; task "image" only where the server says so
        (another Atelier's ``atelier serve`` marks its image models), else "chat"."""
        conn, resp = self._request("GET", "/models")
        try:
            data = json.loads(resp.read(2_000_000))
        except ValueError as exc:
            raise RemoteError(f"The server {self.name} gave no model list (not an OpenAI-compatible server?).") from exc
        finally:
            conn.close()
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise RemoteError(f"The server {self.name} gave no model list (not an OpenAI-compatible server?).")
        return [(str(m["id"])[:300], "image" if m.get("task") == "image" else "chat")
                for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def chat(self, model: str, messages: list[dict], params: SamplingParams | dict | None = None,
             token=None, purpose: str = "chat") -> Iterator[ChatEvent]:
        """Stream a reply; the last event is ``done`` with stats (finish_reason stop, length or
        cancelled). ``think`` tags in the text are split out like the local engine's. The audit log
        records the call as one to ``remote:NAME/MODEL`` (engines/audited.py)."""
        from desktop_app.engines.audited import Call, chat_events

        p = SamplingParams.from_dict(params) if isinstance(params, dict) else (params or SamplingParams())
        call = Call.start(purpose, f"remote:{self.name}/{model}", "", p.to_dict(), messages)
        yield from chat_events(call, self._stream(model, messages, p, token))

    def _stream(self, model: str, messages: list[dict], p: SamplingParams, token) -> Iterator[ChatEvent]:
        from desktop_app.engines.think import ThinkParser

        body = {"model": model, "messages": messages, "stream": True, "temperature": p.temperature, "top_p": p.top_p,
                "stream_options": {"include_usage": True}}
        if p.max_tokens and p.max_tokens > 0:
            body["max_tokens"] = p.max_tokens
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        t0 = time.perf_counter()
        conn, resp = self._request("POST", "/chat/completions", body)
        parser = ThinkParser()
        stats = ChatStats()
        n, t_first, t_last, finish = 0, None, None, None
        try:
            while True:
                if token is not None and token.cancelled:
                    finish = "cancelled"
                    break
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise RemoteError(f"The server {self.name} stopped answering mid-reply ({exc}); "
                                      "the reply so far is kept.") from exc
                if not line:
                    if finish is None:
                        raise RemoteError(f"The server {self.name} closed the connection mid-reply; "
                                          "the reply so far is kept.")
                    break
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if isinstance(chunk.get("error"), dict):
                    raise RemoteError(f"The server {self.name} failed: {chunk['error'].get('message', '')}")
                if isinstance(chunk.get("usage"), dict):
                    stats.prompt_tokens = int(chunk["usage"].get("prompt_tokens") or 0)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    for key, kind in (("reasoning_content", "thinking"), ("content", None)):
                        text = delta.get(key)
                        if isinstance(text, str) and text:
                            now = time.perf_counter()
                            t_first = t_first or now
                            t_last = now
                            n += 1
                            if kind == "thinking":
                                yield ChatEvent("thinking", text)
                            else:
                                for k, seg in parser.feed(text):
                                    yield ChatEvent(k, seg)
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
        finally:
            conn.close()
        for k, seg in parser.finish():
            yield ChatEvent(k, seg)
        stats.tokens = n
        stats.ttft_s = (t_first - t0) if t_first else None
        stats.tokens_per_s = ((n - 1) / (t_last - t_first)) if n > 1 and t_last > t_first else None
        stats.total_s = time.perf_counter() - t0
        stats.finish_reason = finish or "stop"
        stats.text, stats.thinking = parser.answer, parser.thinking
        yield ChatEvent("done", stats=stats)


def _b64_pngs(data, name: str) -> list[bytes]:
    import base64
    import binascii

    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise RemoteError(f"The server {name} sent no image.")
    out = []
    for it in items[:16]:
        try:
            png = base64.b64decode((it or {}).get("b64_json") or "", validate=True)
        except (binascii.Error, ValueError, AttributeError) as exc:
            raise RemoteError(f"The server {name} sent an image that is not base64.") from exc
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise RemoteError(f"The server {name} sent something that is not a PNG image.")
        out.append(png)
    return out


def remote_images(server: RemoteServer, model: str, prompt: str, token=None, **fields) -> list[bytes]:
    """PNGs from a server's ``/v1/images/generations`` (b64_json; Atelier's ``atelier serve`` also
    takes negative_prompt, steps, guidance_scale and seed, and puts its parameters in each PNG).
    Cancelling ``token`` closes the connection at once; the audit log records the call as one to
    ``remote:NAME/MODEL`` with each PNG's sha256."""
    import hashlib
    import socket
    import threading

    from desktop_app.core.audit import Call
    from desktop_app.core.errors import Cancelled

    body = {"model": model, "prompt": prompt, "response_format": "b64_json",
            **{k: v for k, v in fields.items() if v is not None}}
    call = Call.start("image", f"remote:{server.name}/{model}", "", dict(fields), prompt)
    conns, done = [], threading.Event()

    def watch():
        while not done.is_set():
            if token.wait(0.2):  # cancelled: close each socket, also one that exists only later
                for c in conns:  # (cancelled while it connects: the socket is not there yet)
                    try:
                        c.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read below
                    except (OSError, AttributeError):
                        pass
                done.wait(0.05)

    if token is not None:  # nothing to watch for without one
        threading.Thread(target=watch, name="remote-image-cancel", daemon=True).start()
    try:
        if token is not None and token.cancelled:
            raise Cancelled()
        conn, resp = server._request("POST", "/images/generations", body, opened=conns.append)
        try:
            data = json.loads(resp.read(256 * 2**20))
        finally:
            conn.close()
        pngs = _b64_pngs(data, server.name)
    except Exception as exc:
        cancelled = token is not None and token.cancelled
        call.end("stopped" if cancelled else "error", None, {"images": 0}, None if cancelled else {"error": str(exc)[:500]})
        if cancelled:
            raise Cancelled() from exc
        if isinstance(exc, (RemoteError, OfflineError)):
            raise
        raise RemoteError(f"The server {server.name} failed to make the image: {exc}") from exc
    finally:
        done.set()
    call.end("done", {"images": [{"sha256": hashlib.sha256(p).hexdigest(), "bytes": len(p)} for p in pngs]},
             {"images": len(pngs)})
    return pngs


class RemoteChatEngine:
    """A server's model where the Chat tab (and Enhance prompt) expects a local engine: ``chat``,
    ``info``, ``unload``. Loading is only a check that the server answers and lists the model."""

    def __init__(self, server: RemoteServer, model: str) -> None:
        self.server, self.model = server, model

    @property
    def model_id(self) -> str:
        from desktop_app.core.remotes import remote_id

        return remote_id(self.server.name, self.model)

    def check(self) -> None:
        ids = self.server.models()
        if self.model not in ids:
            listed = ", ".join(ids[:5]) or "none"
            raise RemoteError(f"The server {self.server.name} no longer lists the model {self.model} "
                              f"(it lists: {listed}). Refresh it in Models › Servers.")

    def chat(self, messages: list[dict], params=None, token=None, overflow: str | None = None,
             purpose: str = "chat") -> Iterator[ChatEvent]:
        return self.server.chat(self.model, messages, params, token, purpose=purpose)

    def info(self) -> dict:
        return {"model_id": self.model_id, "name": f"{self.model} on {self.server.name}", "plan": "remote",
                "n_ctx": 0, "n_gpu_layers": 0, "engine_pid": None, "remote": True, "url": self.server.base_url}

    def unload(self) -> None:
        pass
