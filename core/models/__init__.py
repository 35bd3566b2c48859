"""Base models of the local backend: turning a spec's ``model`` into a folder that transformers and vLLM load."""
