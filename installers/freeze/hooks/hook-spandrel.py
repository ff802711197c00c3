# spandrel registers its super-resolution architectures by importing each of them.
from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules("spandrel")
