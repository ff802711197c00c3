"""Qt widgets: the main window and one package per tab (chat, studio, models)."""
