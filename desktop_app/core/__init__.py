"""Qt-free core: hardware, fitting, GGUF metadata, settings and paths, library, history.

Nothing in this package may import PySide6 (tests/unit/test_architecture.py enforces it).
"""
