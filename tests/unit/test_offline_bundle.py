"""Issue 12 (air-gapped install), the quick half: ``install.sh`` checks a bundle against its
manifest before installing anything, and refuses, naming the file, a bundle with one altered byte,
a missing file, an added file, an unsafe path, a rewritten manifest (with --expect-manifest) or
another target. The slow half (tests/e2e/test_offline_install.py) builds a real bundle and
installs it with no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "installers" / "offline"
sys.path.insert(0, str(OFFLINE))
import build_bundle  # noqa: E402

pytestmark = pytest.mark.skipif(os.name == "nt", reason="install.sh is the Linux/macOS installer")


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A small bundle: the real installers and manifest writer, three stand-in payload files."""
    b = tmp_path / "bundle"
    (b / "wheels").mkdir(parents=True)
    (b / "wheels" / "demo-1.0-py3-none-any.whl").write_bytes(os.urandom(4096))
    (b / "models").mkdir()
    (b / "models" / "pack.json").write_text('{"format": "atelier-model-pack", "models": []}')
    (b / "requirements.txt").write_text("demo==1.0\n")
    for name in ("install.sh", "install.ps1", "README.txt"):
        shutil.copy2(OFFLINE / name, b / name)
    target = {"os": sys.platform, "machine": __import__("platform").machine().lower(),
              "python": "%d.%d" % sys.version_info[:2], "backend": "cpu"}
    build_bundle.write_manifest(b, target, "0.1.0")
    return b


def install(bundle: Path, *args: str, prefix: Path | None = None) -> subprocess.CompletedProcess:
    cmd = ["sh", str(bundle / "install.sh"), "--python", sys.executable, *args]
    if prefix is not None:
        cmd += ["--prefix", str(prefix)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def manifest_sha(bundle: Path) -> str:
    import hashlib

    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


def test_an_intact_bundle_verifies(bundle):
    r = install(bundle, "--verify-only", "--expect-manifest", manifest_sha(bundle))
    assert r.returncode == 0, r.stderr
    assert "verified 6 files" in r.stdout and manifest_sha(bundle) in r.stdout


def test_one_altered_byte_is_refused_before_anything_is_installed(bundle, tmp_path):
    whl = bundle / "wheels" / "demo-1.0-py3-none-any.whl"
    data = bytearray(whl.read_bytes())
    data[100] ^= 0x01
    whl.write_bytes(bytes(data))
    prefix = tmp_path / "prefix"
    r = install(bundle, prefix=prefix)  # a real install, not --verify-only
    assert r.returncode == 1
    assert "wheels/demo-1.0-py3-none-any.whl does not match its sha256" in r.stderr
    assert "Nothing was installed" in r.stderr
    assert not prefix.exists()  # refused before a virtual environment or pip


@pytest.mark.parametrize("change, message", [
    (lambda b: (b / "requirements.txt").unlink(), "requirements.txt is missing from the bundle"),
    (lambda b: (b / "wheels" / "evil-9.9-py3-none-any.whl").write_bytes(b"x"),
     "wheels/evil-9.9-py3-none-any.whl is in the bundle but not in its manifest"),
    (lambda b: (b / "requirements.txt").write_text("demo==1.0\nevil==9.9\n"), "requirements.txt has 20 bytes"),
    (lambda b: os.symlink("/etc/passwd", b / "wheels" / "link.whl"), "wheels/link.whl is in the bundle but not"),
])
def test_missing_added_or_resized_files_are_refused(bundle, change, message):
    change(bundle)
    r = install(bundle, "--verify-only")
    assert r.returncode == 1 and message in r.stderr, r.stderr


def rewrite_manifest(bundle: Path, edit) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    edit(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def test_a_manifest_rewritten_to_match_an_altered_file_is_refused_with_the_expected_digest(bundle):
    expected = manifest_sha(bundle)
    whl = bundle / "wheels" / "demo-1.0-py3-none-any.whl"
    whl.write_bytes(b"changed" + whl.read_bytes()[7:])

    def refresh(m):
        for f in m["files"]:
            if f["path"].endswith("demo-1.0-py3-none-any.whl"):
                f["sha256"] = build_bundle.sha256(whl)
    rewrite_manifest(bundle, refresh)
    assert install(bundle, "--verify-only").returncode == 0  # consistent by itself ...
    r = install(bundle, "--verify-only", "--expect-manifest", expected)  # ... but not the one given
    assert r.returncode == 1 and "not the expected" in r.stderr and "altered" in r.stderr


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "wheels/../../x", "a\\b"])
def test_unsafe_manifest_paths_are_refused(bundle, path):
    rewrite_manifest(bundle, lambda m: m["files"].append({"path": path, "size": 1, "sha256": "0" * 64}))
    r = install(bundle, "--verify-only")
    assert r.returncode == 1 and "unsafe or malformed entry" in r.stderr, r.stderr


@pytest.mark.parametrize("key, value", [("python", "2.7"), ("machine", "sparc64"), ("os", "plan9")])
def test_a_bundle_for_another_target_is_refused(bundle, key, value):
    rewrite_manifest(bundle, lambda m: m["target"].update({key: value}))
    r = install(bundle, "--verify-only")
    assert r.returncode == 1 and f"this bundle is for {key} '{value}'" in r.stderr, r.stderr


def test_no_manifest_or_not_a_manifest(bundle):
    (bundle / "manifest.json").write_text('{"format": "something-else"}')
    assert "not an Atelier bundle manifest" in install(bundle, "--verify-only").stderr
    (bundle / "manifest.json").unlink()
    r = install(bundle, "--verify-only")
    assert r.returncode == 1 and "no readable manifest.json" in r.stderr


def test_unknown_options_and_help(bundle):
    r = install(bundle, "--frobnicate")
    assert r.returncode == 2 and "unknown option --frobnicate" in r.stderr
    r = subprocess.run(["sh", str(bundle / "install.sh"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--expect-manifest" in r.stdout


def _wheel(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, b"")
    return path


def test_the_llama_wheels_backend_is_read_from_its_libraries_not_its_headers(tmp_path):
    cpu = _wheel(tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl",
                 ["include/ggml-cuda.h", "include/ggml-metal.h", "llama_cpp/lib/libggml-cpu.so"])
    assert build_bundle.llama_backend_of(cpu) == "cpu"
    cuda = _wheel(tmp_path / "cuda.whl", ["llama_cpp/lib/libggml-cpu.so", "llama_cpp/lib/libggml-cuda.so"])
    assert build_bundle.llama_backend_of(cuda) == "cuda"
    win = _wheel(tmp_path / "win.whl", ["llama_cpp/lib/ggml-cuda.dll"])
    assert build_bundle.llama_backend_of(win) == "cuda"


def test_the_app_wheel_carries_the_resources(tmp_path):
    """The catalog, icons and desktop entry travel inside the app's wheel (setup.py's build_py)."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    names = set(zipfile.ZipFile(next(tmp_path.glob("atelier_studio-*.whl"))).namelist())
    for need in ("desktop_app/resources/catalog.json", "desktop_app/resources/atelier.desktop",
                 "desktop_app/resources/icons/atelier-256.png", "desktop_app/resources/icons/atelier.ico",
                 "desktop_app/resources.py", "desktop_app/cli.py"):
        assert need in names, need
