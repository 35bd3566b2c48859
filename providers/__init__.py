"""Training backends behind one Provider interface (OpenAI's hosted API, the local trainer)."""
