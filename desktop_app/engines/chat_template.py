"""A model's chat template, rendered with a time and a size limit.

The template comes from the GGUF file: untrusted. llama-cpp-python already renders it in Jinja's
sandbox (no code runs), but the sandbox does not bound work: ``{% for i in range(100000) %}{% for j
in range(100000) %}`` or ``{{ 'A' * 200000000 }}`` hang or eat memory. Here every call, attribute
and item access and every ``range`` step checks a deadline, ``*``/``**``/``+`` refuse results over
the size limit, and the output is collected piece by piece up to that limit. A template that hits
a limit raises :class:`TemplateLimitError`; the engine then stops using it (ChatML fallback) and
says why. The engine's child process is the last guarantee (cancel kills it when it is stuck).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from desktop_app.core.errors import AtelierError

TIME_LIMIT_S = 2.0  # real templates render in about a millisecond
BASE_SIZE_LIMIT = 4 * 1024 * 1024  # output characters beyond the conversation's own text


class TemplateLimitError(AtelierError):
    """The chat template ran too long or produced too much text."""


class _Budget:
    def __init__(self) -> None:
        self.deadline = float("inf")
        self.max_chars = BASE_SIZE_LIMIT

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(
                f"The model's chat template ran for more than {TIME_LIMIT_S:g} s (it loops without end?)")

    def size(self, n: int) -> None:
        if n > self.max_chars:
            raise TemplateLimitError(
                f"The model's chat template made a text of {n:,} characters, more than the limit of "
                f"{self.max_chars:,}")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, budget: _Budget, **kw: Any) -> None:
        super().__init__(**kw)
        self.budget = budget
        self.globals["range"] = self._range

    def _range(self, *args: int):
        r = range(*args)
        if len(r) > 1_000_000:
            raise TemplateLimitError(f"The model's chat template asked for a range of {len(r):,} items")
        for i in r:
            self.budget.tick()
            yield i

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        self.budget.tick()
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 1024:
                raise TemplateLimitError("The model's chat template computes a power too large")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    self.budget.size(len(seq) * max(n, 0))
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            self.budget.size(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        __self.budget.tick()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.tick()
        return super().getitem(obj, argument)


class _BoundedTemplate:
    """Stands in for the compiled template inside llama-cpp-python's formatter: ``render`` with limits."""

    def __init__(self, template: jinja2.Template, budget: _Budget) -> None:
        self._template = template
        self._budget = budget

    def render(self, **kw: Any) -> str:
        msgs = kw.get("messages") or []
        own = sum(len(str(m.get("content") or "")) for m in msgs if isinstance(m, dict))
        b = self._budget
        b.max_chars = BASE_SIZE_LIMIT + 2 * own
        b.deadline = time.monotonic() + TIME_LIMIT_S
        try:
            parts, n = [], 0
            for piece in self._template.generate(**kw):
                n += len(piece)
                b.size(n)
                b.tick()
                parts.append(piece)
            return "".join(parts)
        except RecursionError:
            raise TemplateLimitError("The model's chat template recurses too deeply") from None
        except MemoryError:
            raise TemplateLimitError("The model's chat template ran out of memory") from None
        finally:
            b.deadline = float("inf")


_patch_lock = threading.Lock()


@contextlib.contextmanager
def library_templates_deferred():
    """While ``Llama(...)`` is built, its own formatters for the file's templates are not compiled.

    llama-cpp-python compiles every ``tokenizer.chat_template*`` in ``Llama.__init__`` with Jinja's
    constant folding, unbounded: ``{{ 10 ** 100000000 }}`` would hang the load right there. Atelier
    never uses those formatters (it installs :func:`bounded_formatter` as the chat handler), so
    they become inert placeholders during the load.
    """
    import llama_cpp.llama_chat_format as F

    original = F.Jinja2ChatFormatter

    class _Deferred(original):  # type: ignore[misc, valid-type]
        def __init__(self, template: str, eos_token: str, bos_token: str, add_generation_prompt: bool = True,
                     stop_token_ids=None) -> None:
            self.template = template
            self.eos_token, self.bos_token = eos_token, bos_token
            self.add_generation_prompt = add_generation_prompt
            self.stop_token_ids = set(stop_token_ids) if stop_token_ids is not None else None
            self._environment = None

        def __call__(self, **kw):
            raise TemplateLimitError("this template is rendered only through Atelier's bounded formatter")

    with _patch_lock:
        F.Jinja2ChatFormatter = _Deferred
        try:
            yield
        finally:
            F.Jinja2ChatFormatter = original


def bounded_formatter(template: str, eos_token: str, bos_token: str, stop_token_ids=None):
    """llama-cpp-python's ``Jinja2ChatFormatter`` for ``template``, rendering with limits.

    Same environment options (trim/lstrip blocks, the ``generation`` tag, loop controls, its
    ``tojson``), so prompts are identical to the library's for every template that stays in bounds.
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    # built around a trivial template, because its constructor compiles what it is given, unbounded;
    # the real one is compiled below in the bounded environment and put in its place
    fmt = Jinja2ChatFormatter(template=_TRIVIAL, eos_token=eos_token, bos_token=bos_token,
                              stop_token_ids=stop_token_ids)
    fmt.template = template
    budget = _Budget()
    # optimized=False: no constant folding at compile time, where no limit applies ({{ 10 ** 10**8 }})
    env = BoundedEnvironment(budget, loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                             extensions=[Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
                             optimized=False)
    env.filters["tojson"] = fmt.tojson
    try:
        compiled = env.from_string(template)
    except (jinja2.TemplateError, RecursionError, MemoryError, ValueError) as exc:
        raise TemplateLimitError(f"The model's chat template does not compile: {str(exc)[:200]}") from None
    fmt._environment = _BoundedTemplate(compiled, budget)
    return fmt


_TRIVIAL = "{{ '' }}"
