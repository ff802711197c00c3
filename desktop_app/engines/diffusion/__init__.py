"""The image engine: diffusers in a child process (see README.md in this folder)."""
