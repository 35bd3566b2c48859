"""The local backend: trainer (transformers + peft), job runner, serving engines. Heavy imports stay lazy."""
