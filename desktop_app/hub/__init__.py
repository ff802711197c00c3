"""Hub access and the model library's supply side (Qt-free).

- ``catalog``    curated catalog (resources/catalog.json), fit badges, best quantization per family
- ``client``     hub REST client (search, repo files with sizes and LFS sha256, file metadata)
- ``downloads``  resumable, verified downloads (generators + DownloadControl) and DownloadQueue
- ``discovery``  find models other apps already have (HF cache, LM Studio, Ollama, GPT4All, ComfyUI/A1111)
- ``importer``   import a file or folder (copy or in place), remove models
- ``netguard``   the one door to the network (offline switch, proxy)
- ``credentials`` the hub token (keyring or a 0600 file)
"""
