"""The Chat tab's message actions (copy, delete, edit and resend, regenerate, and a reply's
versions ‹ k/n ›), kept apart from the tab's layout. A mixin of ``ChatTab``: it uses the tab's
view, store and controller."""

from __future__ import annotations

from PySide6.QtCore import Slot

from desktop_app.core import history_versions as versions


class MessageActions:
    @Slot(str, int)
    def _on_message_action(self, name: str, message_id: int) -> None:
        if name == "copy":
            self.ctx.status_message.emit("Message copied to the clipboard.")
        elif name == "delete":
            self.delete_message(message_id)
        elif name == "regenerate":
            self.regenerate(message_id)
        elif name == "imagine_this":
            self.imagine_this(message_id)
        elif name == "open_image":
            m = next((m for m in self.view.messages() if m.id == message_id), None)
            if m is not None and m.image:
                self.ctx.open_in_studio.emit(m.image["path"])
        elif name in ("version_prev", "version_next"):
            self.show_version(message_id, -1 if name == "version_prev" else 1)
        elif name == "edit":  # inline, in the bubble (Send: Ctrl+Enter, Cancel: Esc)
            w = self.view.widget_for(message_id)
            if w is not None and not self.generating:
                w.start_edit()
        elif name == "edit_send":
            w = self.view.widget_for(message_id)
            text = w.edited_text() if w is not None else ""
            if text.strip() and self.edit_and_resend(message_id, text):
                w = self.view.widget_for(message_id)
                if w is not None:
                    w.end_edit()

    def delete_message(self, message_id: int) -> None:
        if self.generating and message_id == self.controller.reply_id:
            return
        store = self.active_store
        if store is not None:
            store.delete_message(message_id)
        self.view.remove_message(message_id)

    def regenerate(self, message_id: int | None = None) -> bool:
        """Generate the last reply again; the earlier answers stay as its versions (‹ k/n ›)."""
        if self.generating or self.conversation_id is None:
            return False
        msgs = self.view.messages()
        last = next((m for m in reversed(msgs) if m.role == "assistant"), None)
        if last is None or (message_id is not None and last.id != message_id):
            return False
        store = self.active_store
        old = store.get_message(last.id)
        earlier = versions.versions_of(old) if old is not None else []  # kept: ‹ k/n › on the new reply
        store.truncate_after(last.id, inclusive=True)
        self.view.truncate_after(last.id, inclusive=True)
        self._start_reply()
        if self.controller.reply_id is not None and earlier:
            versions.start_regenerated(store, self.controller.reply_id, earlier)
        return True

    def show_version(self, message_id: int, step: int) -> bool:
        """‹ or › on a reply: show its previous or next version; the model reads that one next."""
        store = self.active_store
        msg = store.get_message(message_id) if store is not None and not self.generating else None
        if msg is None:
            return False
        i, n = versions.position(msg)
        if n < 2 or not 0 <= i + step < n:
            return False
        if msg.role == "user":  # a branch: the messages that followed that version come back with it
            versions.show_branch(store, message_id, i + step)
            self.view.set_messages(store.messages(msg.conversation_id))
            return True
        self.view.show_version(versions.show_version(store, message_id, i + step))
        return True

    def _settle_versions(self, reply_id, store, drop: bool) -> bool:
        """A reply ended: a regenerated one gets its place among the versions (or, when it came to
        nothing, the version it replaced comes back: True)."""
        if reply_id is None or store is None:
            return False
        if drop:
            back = versions.drop_pending(store, reply_id)
            if back is not None and self.view.widget_for(reply_id) is not None:
                self.view.show_version(back)
            return back is not None
        versions.settle(store, reply_id)
        msg = store.get_message(reply_id)
        if msg is not None and self.view.widget_for(reply_id) is not None:
            self.view.show_version(msg)
        return False

    def edit_and_resend(self, message_id: int, text: str) -> bool:
        """Edit a user message as a new branch (the old text and what followed it stay as its
        previous version, ‹ k/n ›) and answer again."""
        if self.generating or not text.strip():
            return False
        store = self.active_store
        self.view.truncate_after(message_id)  # the old branch is kept as the message's previous version
        self.view.show_version(versions.branch_edit(store, message_id, text.strip()))
        self._start_reply()
        return True

