# spandrel registers its super-resolution architectures by importing each of them. Importing spandrel
# needs torchvision, which Atelier does not ship (engines/upscale.py stands in for it at run time),
# so PyInstaller's collect_submodules (which imports) cannot list them: read them off the files.
import importlib.util
import os

_spec = importlib.util.find_spec("spandrel")
hiddenimports = []
if _spec is not None and _spec.origin:
    _root = os.path.dirname(_spec.origin)
    for _dir, _subdirs, _files in os.walk(_root):
        for _f in _files:
            if _f.endswith(".py"):
                _rel = os.path.relpath(os.path.join(_dir, _f), os.path.dirname(_root))[:-3]
                _name = _rel.replace(os.sep, ".")
                hiddenimports.append(_name[: -len(".__init__")] if _name.endswith(".__init__") else _name)
