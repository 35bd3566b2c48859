"""``tuneport export``: a finished local job's model in the formats other runtimes load.

adapter (the LoRA folder), merged (safetensors, logits checked against base + adapter), gguf (llama.cpp, written
with the ``gguf`` package: no llama.cpp checkout, no compiler) and ollama (the GGUF plus a Modelfile). Every
check that can refuse an export runs before the merge or any tensor is written: :mod:`.plan`.
"""
