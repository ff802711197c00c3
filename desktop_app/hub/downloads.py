"""Resumable, verified hub downloads, and a queue the GUI can drive.

One file::

    <models>/hub/<org>/<name>/<file>.part        bytes so far
    <models>/hub/<org>/<name>/<file>.part.json   sidecar: url, size, sha256, etag, commit

Resume uses HTTP Range from the size of the ``.part`` file, also after the process was killed
(the sidecar proves the partial bytes belong to the same file version). Before anything is
written the free disk space is checked (``disk_probe``, replaceable in tests). After the last
byte the sha256 (the hub's LFS sha256, or the git blob sha1 of small files) is verified, and only
then is the file moved into place and registered in the Library (id ``org/repo/file``,
``managed=True``). A mismatch deletes the partial file and raises ModelFormatError. An incomplete
file is never registered. A diffusers repo is assembled in ``<name>.partial/`` and renamed when
every file is verified.

Work is written as generators (``pull_iter``) that yield :class:`DownloadProgress` events and
check a :class:`DownloadControl` (or a plain CancelToken) between chunks: no hidden threads.
:class:`DownloadQueue` runs jobs one after another (or N at a time) in threads *you* give it
(``run(stop)`` in your worker) or its own (``start()``/``shutdown()``), and persists pending jobs.

Split along its sections (issue 10): :mod:`.transfer` (one file: events, control, verification),
:mod:`.pull` (choosing files, planning, registration), :mod:`.licences`, :mod:`.download_queue`.
This module keeps the names other code imports from here.
"""

from __future__ import annotations

# ruff: noqa: F401
from desktop_app.hub.transfer import (
    CHUNK, DISK_MARGIN, Paused, DownloadControl, DownloadProgress, _Meter, _gb, _hash_file,
    default_disk_probe, download_file_iter, part_paths, require_free_space, unverifiable_error,
    verify_file,
)
from desktop_app.hub.licences import (
    RESTRICTIVE_LICENCES, _RESTRICTIVE_FAMILY_RE, _RESTRICTIVE_LICENCE_RE, _licence_error,
    licence_requires_acceptance,
)
from desktop_app.hub.pull import (
    PullPlan, _DIFFUSERS_AUX, _checked, _fetch_model_index, _register, _unverified_warning,
    discard_partial, hub_dir, plan_pull, pull, pull_iter, select_diffusers_files,
)
from desktop_app.hub.download_queue import DownloadJob, DownloadQueue, PERSISTED_STATES
