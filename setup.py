"""Only what pyproject.toml cannot say: the wheel carries the checkout's ``resources/`` (catalog,
icons, desktop entry, diffusion configs) as ``desktop_app/resources/``, where
``desktop_app/resources.py`` looks when the app is installed from a wheel, frozen or bundled."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithResources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's resources/ directly
        src = Path(__file__).resolve().parent / "resources"
        dst = Path(self.build_lib) / "desktop_app" / "resources"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithResources})
