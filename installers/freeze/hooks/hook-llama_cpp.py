# llama-cpp-python loads libllama and the ggml libraries from llama_cpp/lib with ctypes (without
# them: "Shared library with base name 'llama' not found"); its chat-format code reads package data.
from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs, copy_metadata

binaries = collect_dynamic_libs("llama_cpp")
datas = collect_data_files("llama_cpp") + copy_metadata("llama_cpp_python")
