"""Embeddings from the loaded chat model (the server's /v1/embeddings), in the chat engine's
process: a second llama.cpp context on the same file in embedding mode, mean-pooled (a chat model
has no pooling of its own), made on first use and freed with the model."""

from __future__ import annotations

from desktop_app.core.errors import AtelierError

MAX_INPUTS = 256
EMBED_CTX = 2048


def embed(engine, texts: list[str]) -> tuple[list[list[float]], int]:
    """(one normalised vector per text, tokens read) with ``engine``'s model."""
    if engine.llm is None or engine.config is None:
        raise AtelierError("No chat model is loaded.")
    if not texts or len(texts) > MAX_INPUTS or not all(isinstance(t, str) and t for t in texts):
        raise AtelierError(f"Embeddings need 1 to {MAX_INPUTS} non-empty texts.")
    emb = getattr(engine, "_embedder", None)
    if emb is None or getattr(engine, "_embedder_path", None) != engine.config.model_path:
        drop(engine)
        import llama_cpp
        from llama_cpp import Llama

        emb = Llama(engine.config.model_path, embedding=True, n_ctx=min(EMBED_CTX, engine.n_ctx or EMBED_CTX),
                    n_batch=EMBED_CTX, n_ubatch=EMBED_CTX, n_gpu_layers=int(engine.config.n_gpu_layers or 0),
                    pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, verbose=False)
        engine._embedder, engine._embedder_path = emb, engine.config.model_path
    n_tokens = 0
    for t in texts:
        n = len(emb.tokenize(t.encode("utf-8")))
        if n > emb.n_ctx():
            raise AtelierError(f"An input is {n} tokens long; at most {emb.n_ctx()} fit.")
        n_tokens += n
    vectors = emb.embed(texts, normalize=True)
    return [list(map(float, v)) for v in vectors], n_tokens


def drop(engine) -> None:
    emb = getattr(engine, "_embedder", None)
    engine._embedder = None
    if emb is not None:
        emb.close()
