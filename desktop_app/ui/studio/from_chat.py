"""The Studio's side of "Imagine from chat" (issue 14): ``/imagine <description>`` in a chat
message, or "Imagine this" on a reply, generates with the Studio's current image model and
settings (txt2img, one image); the result lands in the gallery like any other (full A1111
metadata) and goes back to the chat, which shows it inline. A click on the chat's image opens it
here with its parameters. The chat tab reaches it only through the context
(``ctx.imagine_handler`` / ``ctx.open_in_studio``): no tab imports another."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QImage

from desktop_app.core.errors import AtelierError


class StudioForChat(QObject):
    def __init__(self, ctx, studio, parent=None) -> None:
        super().__init__(parent or studio)
        self.ctx, self.studio = ctx, studio
        self._pending = None  # (on_done, on_failed, results)
        ctx.imagine_handler = self.imagine
        ctx.open_in_studio.connect(self.open)
        studio.controller.result.connect(self._on_result)
        studio.controller.generation_ended.connect(self._on_ended)

    def imagine(self, prompt: str, on_done, on_failed, idea: str = "") -> None:
        """Generate ``prompt``; ``on_done(path, params)`` or ``on_failed(message)`` later (GUI thread).
        Refusals (busy, no model) raise AtelierError at once."""
        tab = self.studio
        prompt = (prompt or "").strip()
        if not prompt:
            raise AtelierError("Say what to imagine: /imagine a lighthouse in a storm")
        if tab.busy or self._pending is not None:
            raise AtelierError("The Image Studio is busy: try again when its generation ends.")
        rec = tab.current_record()
        if rec is None:
            raise AtelierError("No image model installed: add one in the Models tab first.")
        p = dict(tab.params.get_params())
        p.update(prompt=prompt[:2000], mode="txt2img", batch=1, idea=idea)
        handle = tab.controller.generate(rec, p, None, None)
        if handle is None:
            raise AtelierError("The Image Studio cannot start a generation now.")
        tab.status_label.setText(f"Imagining for the chat with {rec.display_name}…")
        self._pending = (on_done, on_failed, [])

    def _on_result(self, item, source: str) -> None:
        if self._pending is not None and source == "generate":
            self._pending[2].append(item)

    def _on_ended(self, reason: str, images: int) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        on_done, on_failed, results = pending
        if reason == "done" and results:
            on_done(str(results[0].path), dict(results[0].params))
        else:
            error = self.studio.last_error[1] if getattr(self.studio, "last_error", None) else reason
            on_failed("The image was not made: " + ("cancelled." if reason == "cancelled" else str(error)))

    def open(self, path: str) -> None:
        """Show ``path`` in the Studio's preview with its parameters restored (read off the GUI thread)."""
        p = Path(path)

        def work(_token):
            from desktop_app.engines.diffusion.metadata import parse_parameters

            try:
                params = parse_parameters(p)
            except Exception:  # noqa: BLE001 - a PNG without our text chunks
                params = None
            return params, QImage(str(p))

        def done(result):
            params, img = result
            tab = self.studio
            if img.isNull():
                tab.show_error("invalid_request", f"{p.name} is not there any more (deleted from the gallery?).")
                return
            if params:
                tab.reuse_parameters(params, source=f"the chat ({p.name})")
            tab.view_tabs.setCurrentWidget(tab.preview)
            tab.follower.show(img, f"{p.name} · from the chat")

        self.ctx.background.run(work, on_success=done)
