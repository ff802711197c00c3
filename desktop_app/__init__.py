"""Atelier: an offline desktop studio for local language and image models."""

__version__ = "0.1.0"
APP_NAME = "Atelier"
