"""Issue 12: model packs for USB sticks and shared folders. Export writes the models and a
pack.json with every file's size and sha256; import verifies the whole pack first and registers
all of it or nothing (a tampered, missing or escaping file: one clear error naming it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.core.library import Library
from tests.helpers import write_tiny_llama_gguf

ROOT = Path(__file__).resolve().parents[2]


def listed_ids(home: Path) -> list[str]:
    """The library's models, the starter (registered on first run) aside."""
    from desktop_app.core.starter import STARTER_ID

    out = json.loads(cli(home, "models", "list", "--json").stdout.strip().splitlines()[-1])
    return [x["id"] for x in (out if isinstance(out, list) else out["models"]) if x["id"] != STARTER_ID]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ATELIER_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "desktop_app", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)


@pytest.fixture
def pack(tmp_path, atelier_home):
    from desktop_app.hub.importer import import_path

    gguf = write_tiny_llama_gguf(tmp_path / "src" / "tiny-llama.gguf")
    rec = import_path(gguf)
    lib = Library()
    rec.repo_id, rec.license, rec.revision = "acme/tiny-llama-GGUF", "apache-2.0", "0123abcd"
    lib.add(rec)
    out = tmp_path / "stick"
    r = cli(atelier_home, "models", "export", rec.id, "--to", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["models"] == [rec.id]
    return out, rec


def test_export_then_import_on_another_machine(pack, tmp_path):
    out, rec = pack
    desc = json.loads((out / "pack.json").read_text())
    (m,) = desc["models"]
    assert m["repo_id"] == "acme/tiny-llama-GGUF" and m["task"] == "chat" and m["format"] == "gguf"
    (f,) = m["files"]
    assert (out / f["path"]).stat().st_size == f["size"] == Path(rec.path).stat().st_size and len(f["sha256"]) == 64

    other = tmp_path / "other_home"  # the air-gapped machine
    r = cli(other, "models", "import", str(out), "--json")
    assert r.returncode == 0, r.stderr
    (got,) = json.loads(r.stdout.strip().splitlines()[-1])["imported"]
    assert got["source"] == "pack" and got["managed"] and got["sha256"] == f["sha256"]
    assert got["repo_id"] == "acme/tiny-llama-GGUF" and got["license"] == "apache-2.0" and got["revision"] == "0123abcd"
    assert Path(got["path"]).is_file() and str(other) in got["path"]  # copied: the stick can go
    assert listed_ids(other) == [got["id"]]
    # the same pack again: nothing is added twice, and the user is told
    r = cli(other, "models", "import", str(out), "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout.strip().splitlines()[-1])
    assert again["imported"] == [] and again["already_installed"] == [got["id"]]
    assert listed_ids(other) == [got["id"]]


def _refused(home: Path, folder: Path, needle: str) -> None:
    r = cli(home, "models", "import", str(folder))
    assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert listed_ids(home) == []  # nothing registered
    assert not (home / "models" / "imported").exists() or not any((home / "models" / "imported").iterdir())


def test_a_tampered_missing_or_escaping_file_is_refused_and_nothing_registered(pack, tmp_path):
    out, _rec = pack
    desc = json.loads((out / "pack.json").read_text())
    rel = desc["models"][0]["files"][0]["path"]

    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    data = bytearray((tampered / rel).read_bytes())
    data[len(data) // 2] ^= 0x01  # one altered byte, same size
    (tampered / rel).write_bytes(bytes(data))
    _refused(tmp_path / "h1", tampered, "does not match its checksum")

    missing = tmp_path / "missing"
    shutil.copytree(out, missing)
    (missing / rel).unlink()
    _refused(tmp_path / "h2", missing, "is missing")

    escaping = tmp_path / "escaping"
    shutil.copytree(out, escaping)
    bad = json.loads((escaping / "pack.json").read_text())
    bad["models"][0]["files"][0]["path"] = "../../etc/passwd"
    (escaping / "pack.json").write_text(json.dumps(bad))
    _refused(tmp_path / "h3", escaping, "..")

    huge = tmp_path / "huge"
    shutil.copytree(out, huge)
    bad = json.loads((huge / "pack.json").read_text())
    bad["models"][0]["name"] = "x" * 100_000  # shown in the app: a pack cannot make it arbitrary
    (huge / "pack.json").write_text(json.dumps(bad))
    _refused(tmp_path / "h5", huge, "is not a short text")

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "pack.json").write_text("{not json")
    _refused(tmp_path / "h4", garbage, "not valid JSON")


def test_export_refuses_unknown_ids_and_an_existing_pack(pack, atelier_home):
    out, rec = pack
    r = cli(atelier_home, "models", "export", rec.id, "--to", str(out))
    assert r.returncode == 1 and "already holds a model pack" in r.stderr
    r = cli(atelier_home, "models", "export", "no-such-model", "--to", str(out.parent / "x"))
    assert r.returncode == 1 and "No model 'no-such-model'" in r.stderr and not (out.parent / "x").exists()


def test_a_failure_half_way_takes_back_what_the_import_registered(tmp_path, atelier_home, monkeypatch):
    from desktop_app.hub.importer import import_path
    from desktop_app.hub.packs import export_pack, import_pack

    a = import_path(write_tiny_llama_gguf(tmp_path / "src" / "a-llama.gguf"))
    b = import_path(write_tiny_llama_gguf(tmp_path / "src" / "b-llama.gguf", seed=1))
    export_pack([a.id, b.id], tmp_path / "stick")
    other = tmp_path / "other"
    monkeypatch.setenv("ATELIER_HOME", str(other))
    blocker = other / "models" / "imported" / "b-llama.gguf"  # the second copy cannot be made
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"someone else's file")
    with pytest.raises(Exception, match="already exists"):
        import_pack(tmp_path / "stick")
    assert not [r for r in Library().list() if r.source == "pack"]  # nothing from the pack stays registered
    assert not (other / "models" / "imported" / "a-llama.gguf").exists()  # the first copy was taken back
    assert blocker.read_bytes() == b"someone else's file"
