# diffusers imports its pipelines, models and schedulers lazily by name (_LazyModule): collect them
# all, with their sources (some pipelines inspect their own source) and the package metadata that
# diffusers' dependency checks read.
from PyInstaller.utils.hooks import collect_submodules, copy_metadata

hiddenimports = collect_submodules("diffusers", filter=lambda name: ".commands" not in name)
datas = copy_metadata("diffusers")
module_collection_mode = "pyz+py"
