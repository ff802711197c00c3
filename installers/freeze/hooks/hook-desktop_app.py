# Atelier itself: the engine children are started by module name (desktop_app.engines.chat_server,
# desktop_app.engines.diffusion.server), so every submodule goes in; resources/ travels in the spec.
from PyInstaller.utils.hooks import collect_submodules, copy_metadata

hiddenimports = collect_submodules("desktop_app")
datas = copy_metadata("atelier-studio")
