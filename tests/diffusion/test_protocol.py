"""Wire framing and request validation (no torch, no child process)."""

from __future__ import annotations

import io

import pytest

from desktop_app.core.errors import AtelierError
from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.protocol import Event, GenerateRequest, LoraSpec, ModelSpec


def test_framing_round_trip_with_blobs():
    buf = io.BytesIO()
    P.write_message(buf, {"op": "generate", "id": "j1"}, {"init_image": b"\x89PNG\n\x00" * 10, "mask": b"m\n"})
    P.write_message(buf, {"op": "ping"})
    buf.seek(0)
    h, blobs = P.read_message(buf)
    assert h == {"op": "generate", "id": "j1"}
    assert blobs == {"init_image": b"\x89PNG\n\x00" * 10, "mask": b"m\n"}
    assert P.read_message(buf) == ({"op": "ping"}, {})
    assert P.read_message(buf) is None


def test_request_wire_round_trip():
    req = GenerateRequest(model=ModelSpec("/m/x.safetensors", config="/c"), prompt="p", mode="img2img",
                          init_image=b"img", loras=[LoraSpec("/l.safetensors", 0.5)], seed=3)
    header, blobs = req.to_wire()
    back = GenerateRequest.from_wire(header, blobs)
    assert back == req


def test_event_terminal():
    assert Event(P.DONE).terminal and Event(P.ERROR).terminal and Event(P.CANCELLED).terminal
    assert not Event(P.PROGRESS).terminal


@pytest.mark.parametrize("kwargs, words", [
    ({"width": 100}, "multiple of 8"),
    ({"height": 32}, "at least 64"),
    ({"scheduler": "Heun"}, "Unknown scheduler"),
    ({"mode": "img2img"}, "init image"),
    ({"mode": "inpaint", "init_image": b"x"}, "mask"),
    ({"steps": 0}, "steps"),
    ({"loras": [LoraSpec("/x/lora.ckpt")]}, ".safetensors"),
])
def test_invalid_requests_have_clear_errors(kwargs, words):
    req = GenerateRequest(model=ModelSpec("/m"), prompt="p", **kwargs)
    with pytest.raises(AtelierError, match=words):
        req.validate()


def test_client_reports_invalid_request_without_starting_engine():
    from desktop_app.engines.diffusion.client import EngineProcess

    eng = EngineProcess()
    events = list(eng.generate(GenerateRequest(model=ModelSpec("/m"), prompt="p", width=65)))
    assert [e.type for e in events] == ["error"]
    assert events[0]["kind"] == "invalid_request" and "multiple of 8" in events[0]["message"]
    assert not eng.alive


def test_imagine_and_the_studio_build_the_same_spec_from_a_record(tmp_path):
    """Issue 10: one ModelSpec.for_record; `atelier imagine` no longer drops the family and config."""
    from desktop_app.commands.imagine import resolve_model
    from desktop_app.core.library import Library, ModelRecord
    from desktop_app.engines.diffusion.protocol import ModelSpec

    f = tmp_path / "m.safetensors"
    f.write_bytes(b"x")
    rec = ModelRecord(id="my-sd", task="image", format="safetensors", path=str(f), size_bytes=1, family="sd15",
                      extra={"config": str(tmp_path / "cfg")})
    Library().add(rec)
    want = ModelSpec(path=str(f), family="sd15", config=str(tmp_path / "cfg"))
    assert ModelSpec.for_record(rec) == want
    assert resolve_model("my-sd", False) == want
    assert resolve_model(str(f), False) == want  # a registered path gets its record's spec
    rec2 = ModelRecord(id="my-flux", task="image", format="diffusers", path=str(tmp_path), size_bytes=1,
                       family="flux-schnell")
    assert ModelSpec.for_record(rec2).family is None  # told apart from its files
