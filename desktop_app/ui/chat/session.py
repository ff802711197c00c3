"""Which history the Chat tab writes to: the saved one (``history.sqlite3``) and, in private mode,
an in-memory one that is thrown away when private mode ends. No widgets.

A private store that a reply is still writing to (``in_use``) is not closed under it: the reply's
job closes nothing, and the store goes when the last reference does."""

from __future__ import annotations

import logging

from desktop_app.core.history import HistoryStore, PrivateHistory

log = logging.getLogger(__name__)
TITLE_CHARS = 48


def title_from(text: str) -> str:
    """A new conversation's title: its first message on one line, cut at a word with "…"."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class ChatStores:
    def __init__(self) -> None:
        self.error = ""  # why the saved history could not be opened ("" when it could)
        from desktop_app.core.policy import current

        pol = current()
        # history.mode = "private_only": every chat is private, nothing is written (the button is locked)
        self.policy_note = (f"Every chat is private: {pol.source} keeps no chat history." if pol.private_only
                            else "")
        self.saved: HistoryStore | None = None
        self.private_store: HistoryStore | None = None
        self.private = False
        if self.policy_note:
            return
        try:
            self.saved = HistoryStore()
        except Exception as exc:  # noqa: BLE001 - the chat still works, privately
            log.error("history unavailable: %s", exc)
            self.saved = None
            self.error = str(exc)

    @property
    def active(self) -> HistoryStore | None:
        return self.private_store if self.private else self.saved

    def set_private(self, on: bool, in_use=None) -> bool:
        """Enter or leave private mode; False when nothing changed (or the policy keeps it on)."""
        if not on and self.policy_note:
            return False
        if on == self.private and (not on or self.private_store is not None):
            return False
        if on:
            self.private_store = PrivateHistory()
        else:
            self._drop_private(in_use)
        self.private = on
        return True

    def fresh_private(self, in_use=None) -> None:
        """A new private chat: the old in-memory history goes."""
        self._drop_private(in_use)
        self.private_store = PrivateHistory()

    def _drop_private(self, in_use) -> None:
        old, self.private_store = self.private_store, None
        if old is not None and old is not in_use:
            old.close()

    def close(self) -> None:
        for st in (self.private_store, self.saved):
            if st is not None:
                st.close()
        self.private_store = None
