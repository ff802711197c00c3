"""``atelier desktop-install [--uninstall]``: Atelier in the Linux desktop's menu, for this user.

Writes, under ``$XDG_DATA_HOME`` (``~/.local/share``): ``applications/atelier.desktop`` launching
the installed ``atelier-gui`` by its absolute path, the icon in every size of the hicolor theme
(PNG 16-512 px and the SVG), and the AppStream metainfo. ``--uninstall`` removes exactly those
files. The desktop's caches are refreshed when their tools are installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError
from desktop_app.resources import resource

APP_ID = "io.atelier.Atelier"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def gui_executable() -> Path:
    """The installed ``atelier-gui``: beside this Python (a virtual environment), else on PATH."""
    here = Path(sys.executable).parent / "atelier-gui"
    if here.is_file():
        return here
    found = shutil.which("atelier-gui")
    if found:
        return Path(found)
    raise AtelierError("atelier-gui is not installed (pip install the app first); nothing was written.")


def _exec_value(path: Path) -> str:
    """A path as the Exec key wants it: quoted, with the characters the spec reserves escaped."""
    s = str(path)
    if not any(c in s for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return s
    return '"' + "".join("\\" + c if c in '"`$\\' else c for c in s) + '"'


def planned_files(exe: Path) -> dict[str, bytes]:
    """{path under XDG_DATA_HOME: content} of an install."""
    lines = []
    for line in resource("atelier.desktop").read_text("utf-8").splitlines():
        if line.startswith("Exec="):
            line = f"Exec={_exec_value(exe)}"
        elif line.startswith("TryExec="):
            line = f"TryExec={exe}"
        lines.append(line)
    files = {"applications/atelier.desktop": ("\n".join(lines) + "\n").encode("utf-8"),
             f"metainfo/{APP_ID}.metainfo.xml": resource("atelier.metainfo.xml").read_bytes(),
             "icons/hicolor/scalable/apps/atelier.svg": resource("icons", "atelier.svg").read_bytes()}
    for size in ICON_SIZES:
        files[f"icons/hicolor/{size}x{size}/apps/atelier.png"] = resource("icons", f"atelier-{size}.png").read_bytes()
    return files


def _refresh_caches(root: Path) -> None:
    for cmd in (["update-desktop-database", "-q", str(root / "applications")],
                ["gtk-update-icon-cache", "-q", "-t", "-f", str(root / "icons" / "hicolor")]):
        if shutil.which(cmd[0]):
            subprocess.run(cmd, capture_output=True, timeout=60)


def cmd_desktop_install(args) -> int:
    if not sys.platform.startswith("linux"):
        raise AtelierError("desktop-install is for Linux desktops; on Windows and macOS the installer makes "
                           "the shortcuts.")
    root = data_home()
    files = planned_files(gui_executable()) if not args.uninstall else planned_files(Path("atelier-gui"))
    done = []
    try:
        for rel, data in files.items():
            path = root / rel
            if args.uninstall:
                if path.is_file():
                    path.unlink()
                    done.append(str(path))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            done.append(str(path))
    except OSError as exc:
        raise AtelierError(f"Could not {'remove' if args.uninstall else 'write'} {exc.filename}: "
                           f"{exc.strerror}.") from None
    _refresh_caches(root)
    if args.json:
        emit_json({"uninstalled" if args.uninstall else "installed": done, "data_home": str(root)})
    else:
        verb = "Removed" if args.uninstall else "Installed"
        print(f"{verb} {len(done)} files under {root}" + ("" if args.uninstall else
                                                       ": Atelier is in the applications menu."))
    return 0
