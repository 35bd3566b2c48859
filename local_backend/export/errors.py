"""The one error type of exports: what cannot be exported, where, and what to do instead."""

from __future__ import annotations

from tuneport.errors import ServeError

__all__ = ["ExportError"]


class ExportError(ServeError):
    """A job's model cannot be exported as asked (job not finished, adapter for another base, an architecture,
    tokenizer or quantization the format cannot take, a merge whose logits drift).

    A :class:`~tuneport.errors.ServeError` (same exit code): exporting is handing the model to another server.
    """

    default_hint = "`tuneport jobs get JOB` shows the job and where its outputs are."
