"""The Qt-free core: nothing in core/, engines/ or hub/ imports PySide6 (STYLE.md, issue 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "desktop_app"
QT_FREE = ("core", "engines", "hub", "commands")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_engines_hub_never_import_qt():
    offenders = []
    for sub in QT_FREE:
        for py in (PKG / sub).rglob("*.py"):
            for name in _imports(py):
                if name.split(".")[0] in ("PySide6", "shiboken6") or name.startswith(("desktop_app.qt", "desktop_app.ui")):
                    offenders.append(f"{py.relative_to(PKG)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_importing_every_core_module_loads_no_qt():
    mods = []
    for sub in QT_FREE:
        for py in sorted((PKG / sub).rglob("*.py")):
            rel = py.relative_to(PKG.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[-1] in ("server", "__main__"):
                continue
            mods.append(".".join(parts))
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"Qt modules loaded by the core: {out.stdout}"


def test_ui_flows_one_way():
    """core/engines never import ui or qt; the qt layer never imports ui."""
    offenders = []
    for py in (PKG / "qt").rglob("*.py"):
        for name in _imports(py):
            if name.startswith("desktop_app.ui"):
                offenders.append(f"{py.relative_to(PKG)} imports {name}")
    assert not offenders, "\n".join(offenders)


def _offenders(sub: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for py in (PKG / sub).rglob("*.py"):
        for name in _imports(py):
            if name.startswith(forbidden):
                out.append(f"{py.relative_to(PKG)} imports {name}")
    return out


def test_hub_and_engines_never_import_each_other():
    """Issue 10: what both need (CancelToken, the diffusion FAMILIES) lives in core/."""
    bad = _offenders("hub", ("desktop_app.engines",)) + _offenders("engines", ("desktop_app.hub",))
    assert not bad, "\n".join(bad)


def test_no_tab_imports_another_tab():
    tabs = ("chat", "studio", "models")
    bad = []
    for tab in tabs:
        others = tuple(f"desktop_app.ui.{t}" for t in tabs if t != tab)
        bad += _offenders(f"ui/{tab}", others)
    assert not bad, "\n".join(bad)


def test_one_cancel_token_type():
    """The engines, the hub and the Qt workers share core.cancel.CancelToken; no look-alike classes."""
    bad = []
    for py in PKG.rglob("*.py"):
        tree = ast.parse(py.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and "Token" in node.name and py.name != "cancel.py":
                bad.append(f"{py.relative_to(PKG)} defines {node.name}")
    assert not bad, "\n".join(bad)


def test_views_coalesce_through_the_one_throttle():
    """Issue 10: no bare QTimer( under ui/ outside ui/widgets/throttle.py (qutebrowser's lint)."""
    bad = []
    for py in (PKG / "ui").rglob("*.py"):
        if py.name == "throttle.py":
            continue
        tree = ast.parse(py.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "QTimer":
                bad.append(f"{py.relative_to(PKG)}:{node.lineno}")
    assert not bad, "use desktop_app.ui.widgets.throttle.Coalescer: " + ", ".join(bad)


def test_controllers_build_no_widgets():
    """Issue 10: a tab's controller is a QObject between its model thread and its view; it imports
    no widget module, so it can be tested (and later driven by the server) without a window."""
    bad = []
    for py in (PKG / "ui").rglob("controller.py"):
        bad += [f"{py.relative_to(PKG)} imports {m}" for m in _imports(py) if m.startswith("PySide6.QtWidgets")]
    assert sorted(p.parent.name for p in (PKG / "ui").rglob("controller.py")) == ["chat", "studio"]
    assert not bad, "\n".join(bad)


def test_no_module_over_600_lines():
    """Issue 10: big modules are split along their own sections (the five largest are in the note)."""
    big = {str(py.relative_to(PKG)): n for py in PKG.rglob("*.py")
           if (n := len(py.read_text("utf-8").splitlines())) > 600}
    assert not big, big
