"""Untrusted names -> paths, and deletes that stay inside the folder they own (Qt-free).

Every name that comes from a hub, a mirror, a state file or a model file is untrusted: a hostile
mirror can list ``/etc/x.json``, ``../x.json``, ``C:\\x``, ``CON.txt`` or a repo id ``evil/..``.
These helpers refuse such names *before* anything is written or deleted, with one clear line.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PurePosixPath

from desktop_app.core.errors import AtelierError

# The hub's own rule for repo ids: owner/name, each 1-96 of [A-Za-z0-9._-], not starting or ending
# with '.' or '-', and no '--' or '..' inside (huggingface_hub.utils.validate_repo_id).
_REPO_PART = re.compile(r"^(?![.-])(?!.*(--|\.\.))[A-Za-z0-9._-]{1,96}(?<![.-])$")
# Revisions: a commit sha, a branch or a tag (which may hold '/'); URL-quoted when sent, but also
# stored and shown: keep them to git's plain ref characters.
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
# Windows device names are reserved with any extension ("CON", "nul.txt", "COM1.json").
_WIN_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$", re.IGNORECASE)
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f\\:*?"<>|]')
MAX_NAME = 1024  # a whole relative name
MAX_PART = 255  # one path component (most file systems' limit)
MAX_DEPTH = 16


class UnsafeNameError(AtelierError):
    """A name from an untrusted source that would leave its folder or is not valid on every OS."""


def validate_repo_id(repo_id: object, where: str = "the hub") -> str:
    """``owner/name`` with the hub's allowed characters, or UnsafeNameError. Returns it unchanged."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise UnsafeNameError(f"{_show(repo_id)} from {where} is not a hub repository id (expected 'owner/name').")
    owner, name = repo_id.split("/")
    if not (_REPO_PART.fullmatch(owner) and _REPO_PART.fullmatch(name)):
        raise UnsafeNameError(
            f"{_show(repo_id)} from {where} is not a valid hub repository id: each part is 1-96 letters, digits, "
            "'.', '_' or '-', not starting or ending with '.' or '-', with no '..' or '--'."
        )
    return repo_id


def validate_revision(rev: object, where: str = "the hub") -> str:
    """A commit sha, branch or tag name without path tricks, or UnsafeNameError."""
    if not isinstance(rev, str) or not _REVISION.fullmatch(rev) or ".." in rev or rev.startswith("/") \
            or rev.endswith("/") or "//" in rev:
        raise UnsafeNameError(f"{_show(rev)} from {where} is not a valid revision (a commit id, branch or tag).")
    return rev


def validate_relpath(name: object, where: str = "the hub") -> PurePosixPath:
    """A file name from a listing as a relative POSIX path that is valid and stays below its folder.

    Refuses absolute paths, ``..`` and ``.`` parts, empty parts, backslashes, drive letters and
    every other character Windows forbids, control characters, reserved device names, parts that
    end in a dot or a space, and names that are too long or too deep.
    """
    def bad(why: str) -> UnsafeNameError:
        return UnsafeNameError(f"Refused the file name {_show(name)} from {where}: {why}. Nothing was written.")

    if not isinstance(name, str) or not name:
        raise bad("it is empty or not text")
    if len(name) > MAX_NAME:
        raise bad(f"it is longer than {MAX_NAME} characters")
    if name.startswith("/"):
        raise bad("it is an absolute path")
    m = _BAD_CHARS.search(name)
    if m:
        raise bad(f"it contains {m.group(0)!r}, which is not allowed in a file name on every system")
    parts = name.split("/")
    if len(parts) > MAX_DEPTH:
        raise bad(f"it is more than {MAX_DEPTH} folders deep")
    for p in parts:
        if p in ("", ".", ".."):
            raise bad("it has an empty, '.' or '..' part")
        if len(p) > MAX_PART:
            raise bad(f"one part is longer than {MAX_PART} characters")
        if p[-1] in ". ":
            raise bad("a part ends with a dot or a space")
        if _WIN_RESERVED.match(p):
            raise bad(f"'{p}' is a reserved device name on Windows")
    return PurePosixPath(name)


def inside(base: Path | str, name: str, where: str = "the hub") -> Path:
    """``base / name`` for an untrusted relative ``name``, checked to resolve strictly inside ``base``.

    Symlinks already on disk are followed by the check, so a link planted inside the folder cannot
    carry a write outside it.
    """
    rel = validate_relpath(name, where)
    base = Path(base)
    target = base.joinpath(*rel.parts)
    if not is_strictly_inside(target, base):
        raise UnsafeNameError(f"Refused the file name {_show(name)} from {where}: it resolves outside "
                              f"{base}. Nothing was written.")
    return target


def is_strictly_inside(path: Path | str, folder: Path | str) -> bool:
    """True when ``path`` resolves to something below ``folder`` (never ``folder`` itself)."""
    try:
        p = Path(os.path.realpath(path))
        f = Path(os.path.realpath(folder))
    except (OSError, ValueError):
        return False
    return p != f and p.is_relative_to(f)


def remove_inside(path: Path | str, owner: Path | str) -> bool:
    """Delete ``path`` (a file or a folder tree) only when it lies strictly inside ``owner``.

    Returns True when something was deleted, False when nothing was there. Raises UnsafeNameError,
    deleting nothing, when the path is ``owner`` itself, above it, or elsewhere. A symlink is
    removed as a link, never followed.
    """
    path = Path(path)
    parent_real = Path(os.path.realpath(path.parent))
    # the link itself (not its target) is what we delete: check the folder it sits in, plus its name
    if path.name in ("", ".", "..") or not (parent_real == Path(os.path.realpath(owner)) or
                                           is_strictly_inside(parent_real, owner)):
        raise UnsafeNameError(f"Refused to delete {path}: it is not inside {owner}, the folder Atelier owns.")
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
        return True
    return False


def _show(value: object, limit: int = 80) -> str:
    """An untrusted value for an error message: repr (control characters escaped), bounded."""
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def safe_filename(title: object, ext: str, fallback: str = "chat", limit: int = 80) -> str:
    """A file name made from a title (a conversation's, a prompt) that every OS accepts:
    ``/ \\ : * ? " < > |`` and control characters become spaces, no leading/trailing dots or
    spaces (Windows drops them), no device name (``CON``, ``nul``), at most ``limit`` characters
    before ``.ext``."""
    text = str(title or "")
    text = _BAD_CHARS.sub(" ", text.replace("/", " "))
    text = " ".join(text.split())[:limit].strip(" .")
    if not text or _WIN_RESERVED.match(text) or _WIN_RESERVED.match(text.split(".")[0]):
        text = (text + " " + fallback).strip() if text else fallback
    return f"{text}.{ext.lstrip('.')}"
