"""The only layer that bridges the Qt-free core/engines to the GUI: threads, workers, signals.

Data flows ui -> qt -> engines/core, never back: nothing below imports from here.
"""
