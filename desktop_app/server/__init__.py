"""Atelier's local OpenAI-compatible server (issue 15): an ASGI app (Starlette) on uvicorn over
the same engines as the GUI and the CLI. ``atelier serve`` runs it."""
