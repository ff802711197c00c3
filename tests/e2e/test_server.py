"""`atelier serve` against the official `openai` client (issue 15), with the real starter model:
models, streaming and not, max tokens, stop, seed reproducibility, 8 concurrent clients, a
client that disconnects cancels its generation, 401/400/404, and the API-key rule off loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

try:  # the HTTP client the openai package brings (httpx2 in its current releases)
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx

from desktop_app.core.starter import STARTER_ID

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-123"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, starter_model):
    home = tmp_path_factory.mktemp("serve_home")
    port = free_port()
    env = {**os.environ, "ATELIER_HOME": str(home)}
    from tests.diffusion import tiny_pipelines as tp

    folder = tp.build_sd15(tmp_path_factory.mktemp("serve_tiny") / "tiny-sd15")
    r = subprocess.run([sys.executable, "-m", "desktop_app", "models", "import", str(folder), "--json"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    log = home / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "desktop_app", "serve", "--port", str(port), "--api-key", KEY],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the server did not start: " + log.read_text())
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def client(server):
    from openai import OpenAI

    c = OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=120)
    yield c
    c.close()


def ask(client, text="Name three colours.", **kw):
    return client.chat.completions.create(model=STARTER_ID, messages=[{"role": "user", "content": text}], **kw)


def test_models_and_a_reply(client):
    ids = [m.id for m in client.models.list()]
    assert STARTER_ID in ids
    r = ask(client, max_tokens=8, temperature=0.0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content and r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0
    assert r.choices[0].finish_reason in ("length", "stop")


def test_seed_reproducible_and_streaming_gives_the_same_text(client):
    a = ask(client, "Write a short poem about the sea.", max_tokens=24, temperature=0.9, seed=42)
    b = ask(client, "Write a short poem about the sea.", max_tokens=24, temperature=0.9, seed=42)
    assert a.choices[0].message.content == b.choices[0].message.content
    chunks = list(ask(client, "Write a short poem about the sea.", max_tokens=24, temperature=0.9, seed=42,
                      stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == a.choices[0].message.content and len(chunks) > 5


def test_stop_and_max_tokens(client):
    prompt = "Write a short poem about the sea."
    text = ask(client, prompt, max_tokens=40, temperature=0.0).choices[0].message.content
    words = text.split()
    assert len(words) >= 6, text
    cut = next(w for i, w in enumerate(words[3:], 3) if w not in " ".join(words[:i]))  # first seen there
    stopped = ask(client, prompt, max_tokens=40, temperature=0.0, stop=[cut])
    out = stopped.choices[0].message.content
    assert cut not in out and text.startswith(out) and stopped.choices[0].finish_reason == "stop", (cut, out)
    short = ask(client, prompt, max_tokens=3, temperature=0.0)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_eight_concurrent_clients_are_all_answered(client):
    results, errors = [None] * 8, []

    def one(i):
        try:
            results[i] = ask(client, f"Say the number {i}.", max_tokens=6, temperature=0.0).choices[0].message.content
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and all(results), (errors, results)


def test_a_client_that_disconnects_cancels_its_generation(server):
    h = {"Authorization": f"Bearer {KEY}"}
    before = httpx.get(server + "/atelier/status", headers=h).json()
    body = {"model": STARTER_ID, "stream": True, "max_tokens": 4000, "temperature": 1.0, "seed": 1,
            "messages": [{"role": "user", "content": "Tell a very long story about a lighthouse keeper."}]}
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, headers=h, timeout=60) as r:
        n = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                n += 1
            if n >= 5:
                break  # leave mid-reply: the connection closes
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        st = httpx.get(server + "/atelier/status", headers=h).json()
        if st["cancelled"] > before["cancelled"] and not st["busy"]:
            break
        time.sleep(0.1)
    assert st["cancelled"] == before["cancelled"] + 1 and not st["busy"], st
    # the model is free at once for the next request
    r = httpx.post(server + "/v1/chat/completions", headers=h, timeout=60,
                   json={"model": STARTER_ID, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None


def test_errors_have_openai_shape(server, client):
    from openai import AuthenticationError, BadRequestError, NotFoundError, OpenAI

    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    r = httpx.get(server + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(NotFoundError) as nf:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert "no-such-model" in str(nf.value)
    with pytest.raises(BadRequestError):
        ask(client, temperature=5)
    r = httpx.post(server + "/v1/chat/completions", content=b"{not json", timeout=10,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(server + "/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": STARTER_ID, "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_another_address_needs_an_api_key(tmp_path):
    env = {**os.environ, "ATELIER_HOME": str(tmp_path)}
    env.pop("ATELIER_API_KEY", None)
    r = subprocess.run([sys.executable, "-m", "desktop_app", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "needs an API key" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_json_schema_response_parses(client, server):
    import json as _json

    from openai import BadRequestError

    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = ask(client, "Invent a person. Answer in JSON.", max_tokens=60, temperature=0.0,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    data = _json.loads(r.choices[0].message.content)
    assert set(data) == {"name", "age"} and isinstance(data["name"], str) and isinstance(data["age"], int)
    obj = ask(client, "Give a JSON object.", max_tokens=40, temperature=0.0, response_format={"type": "json_object"})
    assert isinstance(_json.loads(obj.choices[0].message.content), dict)
    with pytest.raises(BadRequestError) as bad:
        ask(client, "x", max_tokens=5, response_format={"type": "json_schema",
                                                         "json_schema": {"name": "n", "schema": {"type": "no-such-type"}}})
    assert "JSON schema" in str(bad.value)


def test_images_generations_b64(client):
    import base64
    import io

    from PIL import Image

    image_ids = [m.id for m in client.models.list() if m.id != STARTER_ID]
    assert image_ids, "the tiny pipeline is listed"
    r = client.images.generate(model=image_ids[0], prompt="a red fox", size="64x64", n=2, response_format="b64_json")
    assert len(r.data) == 2
    for d in r.data:
        img = Image.open(io.BytesIO(base64.b64decode(d.b64_json)))
        assert img.size == (64, 64) and "parameters" in img.info  # A1111 metadata travels with it
    from openai import BadRequestError, NotFoundError

    with pytest.raises(NotFoundError):
        client.images.generate(model="no-such", prompt="x", response_format="b64_json")
    with pytest.raises(BadRequestError):
        client.images.generate(model=image_ids[0], prompt="x", size="64x64", response_format="url")


def test_embeddings_shape(client):
    import math

    r = client.embeddings.create(model=STARTER_ID, input=["a red fox", "a blue whale", "a red fox"])
    vecs = [d.embedding for d in r.data]
    assert len(vecs) == 3 and len({len(v) for v in vecs}) == 1 and len(vecs[0]) == 576  # SmolLM2-135M's width
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vecs)  # normalised
    same = max(abs(a - b) for a, b in zip(vecs[0], vecs[2]))
    other = max(abs(a - b) for a, b in zip(vecs[0], vecs[1]))
    assert same < 1e-4 < other and r.usage.prompt_tokens > 0  # the same text, the same vector
    one = client.embeddings.create(model=STARTER_ID, input="a red fox")
    assert len(one.data) == 1 and max(abs(a - b) for a, b in zip(one.data[0].embedding, vecs[0])) < 1e-4


def test_embeddings_as_plain_floats(server):
    r = httpx.post(server + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                   json={"model": STARTER_ID, "input": "a red fox", "encoding_format": "float"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 576
    r = httpx.post(server + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                   json={"model": STARTER_ID, "input": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_text_completions(client):
    r = client.completions.create(model=STARTER_ID, prompt="The capital of France is", max_tokens=5, temperature=0.0,
                                  seed=3)
    assert r.object == "text_completion" and r.choices[0].text and r.usage.completion_tokens <= 6
    again = client.completions.create(model=STARTER_ID, prompt="The capital of France is", max_tokens=5,
                                      temperature=0.0, seed=3)
    assert again.choices[0].text == r.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=STARTER_ID, prompt="The capital of France is", max_tokens=5, temperature=0.0, seed=3, stream=True))
    assert streamed == r.choices[0].text
    default = client.completions.create(model=STARTER_ID, prompt="Once upon a time", temperature=0.0)
    assert default.usage.completion_tokens <= 17  # OpenAI's default of 16 tokens
