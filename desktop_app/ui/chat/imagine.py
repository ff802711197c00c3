"""Imagine from chat (issue 14), the Chat tab's side: ``/imagine <description>`` and the
"Imagine this" action on a reply ask the Image Studio (through ``ctx.imagine_handler``, which the
Studio registers) for an image; it appears inline as an assistant message of its own, stored with
the conversation (``params["image"]``: path, prompt, seed, model), so it survives a restart and an
export. Such messages and the ``/imagine`` command are never sent to the language model. A click
on the image opens it in the Studio with its parameters (``ctx.open_in_studio``). A mixin of
``ChatTab``."""

from __future__ import annotations

COMMAND = "/imagine"
IMAGINE_THIS_CHARS = 600  # what of a reply "Imagine this" sends as the description


def imagine_command(text: str) -> str | None:
    """The description of a ``/imagine …`` message, or None when it is not one."""
    t = (text or "").strip()
    if t == COMMAND or t.startswith(COMMAND + " ") or t.startswith(COMMAND + "\n"):
        return t[len(COMMAND):].strip()
    return None


def image_summary(params: dict) -> dict:
    """What the chat keeps of a generated image (the PNG itself carries the full metadata)."""
    keep = ("prompt", "negative", "seed", "steps", "width", "height", "model", "model_sha256", "scheduler", "idea")
    return {k: params[k] for k in keep if k in params}


class ChatImagine:
    def imagine(self, description: str, user_text: str | None = None) -> bool:
        """Ask the Studio for ``description``; ``user_text``: the /imagine message to store first."""
        from desktop_app.core.errors import AtelierError

        store = self.active_store
        handler = getattr(self.ctx, "imagine_handler", None)
        if not description.strip():
            self.ctx.status_message.emit("Say what to imagine: /imagine a lighthouse in a storm")
            return False
        if handler is None:
            self.ctx.status_message.emit("The Image Studio is not ready yet: try again in a moment.")
            return False
        if store is None:
            return False
        if self.conversation_id is None or store.get_conversation(self.conversation_id) is None:
            self._new_conversation_for(user_text or description)
        cid = self.conversation_id
        if user_text is not None:
            msg = store.add_message(cid, "user", user_text, model_id=self.chosen_model, params={"command": "imagine"})
            self.view.add_message(msg)
            self.input.clear()
        try:
            handler(description, lambda path, params: self._on_imagined(store, cid, description, path, params),
                    lambda text: self._on_imagine_failed(text))
        except AtelierError as exc:
            self._on_imagine_failed(str(exc))
            return False
        self.status_label.setText("Imagining… (the Image Studio shows the progress)")
        return True

    def _on_imagined(self, store, cid: int, description: str, path: str, params: dict) -> None:
        if self._shut:
            return
        info = {"path": path, **image_summary(params)}
        msg = store.add_message(cid, "assistant", f"Image: {description}", params={"image": info})
        if cid == self.conversation_id and store is self.active_store:
            self.view.add_message(msg)
        self.status_label.setText("Image ready (click it to open it in the Image Studio).")

    def _on_imagine_failed(self, text: str) -> None:
        if not self._shut:
            self.status_label.setText(text)
            self.ctx.status_message.emit(text)

    def imagine_this(self, message_id: int) -> bool:
        m = next((m for m in self.view.messages() if m.id == message_id), None)
        if m is None or not m.content.strip():
            return False
        return self.imagine(m.content.strip()[:IMAGINE_THIS_CHARS])
