"""The OpenAI-compatible HTTP API, as a Starlette app (served by uvicorn: ``atelier serve``).

Routes: ``GET /v1/models``, ``POST /v1/completions`` (a raw prompt), ``/v1/embeddings``,
``/v1/images/generations`` (``atelier serve``) and ``POST /v1/chat/completions``
(streamed as server-sent events or not; ``max_tokens``/``max_completion_tokens``, ``stop``,
``seed``, ``temperature``, ``top_p``, ``response_format`` text / json_object / json_schema (a
llama.cpp grammar)). Every request runs on the one model thread
(:mod:`desktop_app.server.worker`), in order. A client that disconnects cancels its generation
(within one token). Errors have OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}``: 400 bad JSON or parameters, 401 a missing or wrong API key, 404 an unknown model.

Why Starlette and not a hand-written server: HTTP/1.1 parsing, keep-alive, chunked streaming and
disconnect detection are uvicorn's and Starlette's (well kept, ASGI); this module is only the API.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from desktop_app.core.cancel import CancelToken
from desktop_app.core.errors import AtelierError
from desktop_app.server.worker import _DONE, ChatWorker, Job

MAX_BODY = 8 * 2**20  # a request body larger than this is refused (a prompt, not a file)


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


def _text_of(content) -> str:
    """A message's content: a string, or OpenAI's list of parts (only text parts are read)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str):
                parts.append(p["text"])
            else:
                raise ApiError(400, "Only text content parts are supported.", param="messages")
        return "".join(parts)
    if content is None:
        return ""
    raise ApiError(400, "A message's content must be a string or a list of text parts.", param="messages")


def _model_and_stream(body) -> tuple[str, bool]:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required (see GET /v1/models).", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.", param="stream")
    return model, stream


def parse_chat_request(body: dict) -> tuple[str, list[dict], dict, bool]:
    """(model, messages, sampling params, stream) from a chat completions body, or ApiError(400)."""
    model, stream = _model_and_stream(body)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty list.", param="messages")
    messages = []
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
            raise ApiError(400, "Each message needs a role: system, user or assistant.", param="messages")
        role = "system" if m["role"] == "developer" else m["role"]
        messages.append({"role": role, "content": _text_of(m.get("content"))})
    return model, messages, parse_sampling(body), stream


def parse_completion_request(body: dict) -> tuple[str, str, dict, bool]:
    """(model, prompt, sampling params, stream) from a /v1/completions body, or ApiError(400)."""
    model, stream = _model_and_stream(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "'prompt' must be a non-empty string (one prompt per request).", param="prompt")
    return model, prompt, parse_sampling({"max_tokens": 16, **body}), stream  # OpenAI's default: 16


def parse_sampling(body: dict) -> dict:
    """The sampling parameters shared by chat and text completions."""
    params: dict = {}
    for key, lo, hi in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        v = body.get(key)
        if v is not None:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ApiError(400, f"'{key}' must be a number from {lo} to {hi}.", param=key)
            params[key] = float(v)
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    if mt is not None:
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise ApiError(400, "'max_tokens' must be a positive integer.", param="max_tokens")
        params["max_tokens"] = mt
    else:
        params["max_tokens"] = -1  # until the model stops or the context is full, as OpenAI does
    seed = body.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ApiError(400, "'seed' must be an integer.", param="seed")
        params["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
            raise ApiError(400, "'stop' must be a string or a list of up to 4 strings.", param="stop")
        params["stop"] = stops
    if body.get("n", 1) != 1:
        raise ApiError(400, "Only n=1 is supported.", param="n")
    rf = body.get("response_format")
    if rf is not None:
        kind = rf.get("type") if isinstance(rf, dict) else None
        if kind == "json_object":
            params["json_schema"] = {"type": "object"}
        elif kind == "json_schema":
            js = rf.get("json_schema")
            schema = js.get("schema") if isinstance(js, dict) else None
            if not isinstance(schema, dict):
                raise ApiError(400, "response_format json_schema needs json_schema.schema (an object).",
                               param="response_format")
            params["json_schema"] = schema
        elif kind != "text":
            raise ApiError(400, "response_format type must be text, json_object or json_schema.",
                           param="response_format")
    return params


def image_options(body: dict) -> dict:
    """Atelier's own fields of an image request, beside OpenAI's (other clients leave them out):
    ``negative_prompt``, ``steps`` (1-150), ``guidance_scale`` (0-30)."""
    out: dict = {}
    neg = body.get("negative_prompt")
    if neg is not None:
        if not isinstance(neg, str):
            raise ApiError(400, "'negative_prompt' must be a string.", param="negative_prompt")
        out["negative"] = neg
    for key, name, lo, hi, kind in (("steps", "steps", 1, 150, int), ("guidance_scale", "guidance", 0.0, 30.0, float)):
        v = body.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)) \
                or not lo <= v <= hi:
            raise ApiError(400, f"'{key}' must be a number from {lo} to {hi}.", param=key)
        out[name] = kind(v)
    return out


FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


class ServerState:
    def __init__(self, library, api_key: str | None, worker: ChatWorker, images=None) -> None:
        self.library, self.api_key, self.worker, self.images = library, api_key, worker, images
        self.requests = 0  # answered chat requests (the GUI shows a live count)
        self.active = 0

    def chat_models(self) -> list:
        return [r for r in self.library.list() if r.task == "chat" and r.format == "gguf"]

    def listed_models(self) -> list:
        """What GET /v1/models lists: the chat models, and the image models when images are served."""
        return [r for r in self.library.list() if (r.task == "chat" and r.format == "gguf")
                or (r.task == "image" and self.images is not None)]


def create_app(state: ServerState) -> Starlette:
    async def guard(request: Request) -> None:
        if state.api_key:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), state.api_key.encode()):
                raise ApiError(401, "Incorrect or missing API key (send 'Authorization: Bearer KEY').",
                               code="invalid_api_key")

    async def models(request: Request):
        try:
            await guard(request)
        except ApiError as e:
            return e.response()
        recs = await asyncio.to_thread(state.listed_models)
        return JSONResponse({"object": "list", "data": [
            {"id": r.id, "object": "model", "created": int(r.added_at or 0), "owned_by": "atelier",
             "task": r.task} for r in recs]})

    async def generate(request: Request, text: bool):
        """A chat completion (``text`` False) or a text completion of a raw prompt."""
        try:
            await guard(request)
            body = await _json_body(request)
            model, what, params, stream = (parse_completion_request if text else parse_chat_request)(body)
            await _known_model(state, model)
        except ApiError as e:
            return e.response()
        job = Job(model, what, params, asyncio.get_running_loop(), asyncio.Queue(), kind="complete" if text else "chat")
        state.worker.submit(job)
        cid, created = f"{'cmpl' if text else 'chatcmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
        if stream:
            return StreamingResponse(_stream(state, job, cid, created, model, text=text),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await _complete(state, job, request, cid, created, model, text=text)

    async def chat(request: Request):
        return await generate(request, text=False)

    async def completions(request: Request):
        return await generate(request, text=True)

    async def embeddings(request: Request):
        try:
            await guard(request)
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise ApiError(400, "The request body must be a JSON object.")
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
                raise ApiError(400, "'input' must be a non-empty string or a list of them.", param="input")
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise ApiError(400, "encoding_format must be float or base64.", param="encoding_format")
            model = body.get("model")
            await _known_model(state, model)
        except ApiError as e:
            return e.response()
        job = Job(model, texts, {}, asyncio.get_running_loop(), asyncio.Queue(), kind="embed")
        state.worker.submit(job)
        result = None
        while True:
            item = await job.out.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                return (_refused(item) or ApiError(400 if isinstance(item, AtelierError) else 500, str(item))).response()
            result = item
        if result is None:
            return ApiError(500, "The model gave no embeddings.", type_="server_error").response()
        _, vectors, n = result
        if fmt == "base64":  # little-endian float32, as OpenAI's (the official client asks for it)
            import base64
            import struct

            vectors = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode("ascii") for v in vectors]
        state.requests += 1
        return JSONResponse({"object": "list", "model": model, "usage": {"prompt_tokens": n, "total_tokens": n},
                             "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]})

    async def images(request: Request):
        try:
            await guard(request)
            if state.images is None:
                raise ApiError(404, "This server does not make images.", code="not_found")
            body = await _json_body(request)
            if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
                raise ApiError(400, "'prompt' is required.", param="prompt")
            recs = await asyncio.to_thread(lambda: [r for r in state.library.list() if r.task == "image"])
            model = body.get("model") or (recs[0].id if recs else None)
            rec = next((r for r in recs if r.id == model), None)
            if rec is None:
                raise ApiError(404, f"The image model '{model}' does not exist (see GET /v1/models).", param="model",
                               code="model_not_found")
            n = body.get("n", 1)
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 4:
                raise ApiError(400, "'n' must be 1 to 4.", param="n")
            if body.get("response_format", "b64_json") != "b64_json":
                raise ApiError(400, "Only response_format b64_json is served (no URLs: nothing leaves this "
                               "machine).", param="response_format")
            width = height = None
            size = body.get("size")
            if size not in (None, "auto"):
                try:
                    width, height = (int(x) for x in str(size).lower().split("x"))
                except ValueError as exc:
                    raise ApiError(400, "'size' must be WIDTHxHEIGHT, e.g. 512x512.", param="size") from exc
            seed = body.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise ApiError(400, "'seed' must be an integer.", param="seed")
            options = image_options(body)
        except ApiError as e:
            return e.response()
        token = CancelToken()
        try:
            results = await asyncio.to_thread(state.images.generate, rec, body["prompt"], width, height, n, seed, token,
                                              options)
        except AtelierError as exc:
            return (_refused(exc) or ApiError(400, str(exc))).response()
        finally:
            token.cancel()
        import base64

        state.requests += 1
        return JSONResponse({"created": int(time.time()), "data": [
            {"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": params.get("prompt", ""),
             "seed": params.get("seed")} for png, params in results]})

    async def status(request: Request):
        """Not OpenAI's: what the server does now (the GUI's live count, the tests)."""
        try:
            await guard(request)
        except ApiError as e:
            return e.response()
        w = state.worker
        return JSONResponse({"requests": state.requests, "active": state.active, "pending": w.pending,
                             "model": w.model_id, "busy": w.current is not None, "served": w.served,
                             "cancelled": w.cancelled})

    async def not_found(request: Request, exc):
        return ApiError(404, f"No route {request.url.path}.", code="not_found").response()

    return Starlette(routes=[Route("/v1/models", models, methods=["GET"]),
                             Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/images/generations", images, methods=["POST"]),
                             Route("/v1/embeddings", embeddings, methods=["POST"]),
                             Route("/v1/completions", completions, methods=["POST"]),
                             Route("/atelier/status", status, methods=["GET"])],
                     exception_handlers={404: not_found})


async def _json_body(request: Request):
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"The request body is larger than {MAX_BODY // 2**20} MiB.")
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc}).") from exc


async def _known_model(state: "ServerState", model: str) -> None:
    recs = await asyncio.to_thread(state.chat_models)
    if not any(r.id == model for r in recs):
        raise ApiError(404, f"The model '{model}' does not exist (see GET /v1/models).", param="model",
                       code="model_not_found")


def _refused(exc: BaseException) -> ApiError | None:
    """The administrator's policy refused the model (core/policy.NotApproved): 403, as OpenAI's
    permission errors are."""
    from desktop_app.core.policy import NotApproved

    if isinstance(exc, NotApproved):
        return ApiError(403, str(exc), type_="permission_error", param="model", code="model_not_approved")
    return None


def _failure(exc: BaseException) -> ApiError:
    from desktop_app.engines.chat_types import SCHEMA_ERROR

    refused = _refused(exc)
    if refused is not None:
        return refused
    if str(exc).startswith(SCHEMA_ERROR):
        return ApiError(400, str(exc), param="response_format")
    return ApiError(500, f"The model failed: {exc}", type_="server_error")


def _usage(stats) -> dict:
    p = int(getattr(stats, "prompt_tokens", 0) or 0)
    c = int(getattr(stats, "tokens", 0) or 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


async def _complete(state: ServerState, job: Job, request: Request, cid: str, created: int, model: str,
                    text: bool = False):
    from desktop_app.engines.chat_types import Reply

    reply, stats = Reply(), None
    state.active += 1
    try:
        while True:
            try:
                item = await asyncio.wait_for(job.out.get(), 0.25)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    job.token.cancel()  # the client left: stop at the next token
                continue
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                return _failure(item).response()
            reply.add(item)
            if item.type == "done":
                stats = item.stats
    finally:
        state.active -= 1
    state.requests += 1
    finish = FINISH.get(getattr(stats, "finish_reason", "stop"), "stop")
    if text:
        return JSONResponse({"id": cid, "object": "text_completion", "created": created, "model": model,
                             "choices": [{"index": 0, "text": reply.answer, "logprobs": None, "finish_reason": finish}],
                             "usage": _usage(stats)})
    message = {"role": "assistant", "content": reply.answer}
    if reply.thinking:
        message["reasoning_content"] = reply.thinking
    return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": model,
                         "choices": [{"index": 0, "message": message,
                                      "finish_reason": FINISH.get(getattr(stats, "finish_reason", "stop"), "stop")}],
                         "usage": _usage(stats)})


async def _stream(state: ServerState, job: Job, cid: str, created: int, model: str, text: bool = False):
    def chunk(delta: dict, finish=None, usage=None) -> str:
        if text:  # a text completion's chunk: the new text itself
            d = {"id": cid, "object": "text_completion", "created": created, "model": model,
                 "choices": [{"index": 0, "text": delta.get("content", ""), "logprobs": None, "finish_reason": finish}]}
        else:
            d = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            d["usage"] = usage
        return f"data: {json.dumps(d, ensure_ascii=False)}\n\n"

    def event(item) -> tuple[str, bool]:
        """(the SSE text of one engine item, whether the stream ends with it)."""
        if item is _DONE:
            return "", True
        if isinstance(item, BaseException):
            e = _failure(item)
            err = {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}}
            return f"data: {json.dumps(err)}\n\n", True
        if item.type == "answer" and item.text:
            return chunk({"content": item.text}), False
        if item.type == "thinking" and item.text:
            return chunk({"reasoning_content": item.text}), False
        if item.type == "done":
            return chunk({}, FINISH.get(item.stats.finish_reason, "stop"), _usage(item.stats)), False
        return "", False

    state.active += 1
    try:
        if not text:
            yield chunk({"role": "assistant", "content": ""})
        ended = False
        while not ended:
            # every item already waiting goes out in one write: each token is still its own event,
            # but a client that reads slower than the model writes costs one send, not one per token
            out, ended = event(await job.out.get())
            while not ended and not job.out.empty():
                more, ended = event(job.out.get_nowait())
                out += more
            if out:
                yield out
        yield "data: [DONE]\n\n"
        state.requests += 1
    finally:  # also when the client disconnected (the response task cancels this generator)
        state.active -= 1
        job.token.cancel()
