"""``tuneport export JOB --format adapter|merged|gguf|ollama``: every check first, then the long work.

Order: the job and its adapter (:mod:`.source`), the output folder, then for gguf/ollama the architecture,
the quantization against every row, the tokenizer and the chat template's turn format, all from configs and
headers; only then the merge (checked, :mod:`.merge`) and the GGUF write (:mod:`.gguf_file`). A refused export
costs seconds and writes nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.local_backend.export.errors import ExportError
from tuneport.local_backend.export.gguf_file import QUANTS, gguf_plan, write_gguf
from tuneport.local_backend.export.gguf_vocab import read_vocab
from tuneport.local_backend.export.merge import merge_checked
from tuneport.local_backend.export.modelfile import go_template, modelfile_text, stop_strings
from tuneport.local_backend.export.source import ExportSource, job_source
from tuneport.local_backend.export.turns import CHECK_CONVERSATIONS, TurnFormat, render_with, turn_format

__all__ = ["FORMATS", "MARKER", "GGUF_NAME", "ExportResult", "export_job", "export_source"]

FORMATS = ("adapter", "merged", "gguf", "ollama")
MARKER = "tuneport_export.json"
GGUF_NAME = "model.gguf"


@dataclass
class ExportResult:
    """What was written where, and the checks it passed."""

    job_id: str
    format: str
    quant: str | None
    output: Path
    files: list[str] = field(default_factory=list)
    merge_check: dict[str, Any] | None = None
    stops: list[str] = field(default_factory=list)
    system_prompt: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "format": self.format, "quant": self.quant, "output": str(self.output),
                "files": self.files, "merge_check": self.merge_check, "stops": self.stops,
                "system_prompt": self.system_prompt, "notes": self.notes, "seconds": round(self.seconds, 2)}  # fmt: skip


def _check_output(output: Path) -> None:
    """An output folder is new, empty, or an earlier export (it holds the marker): never someone's other files."""
    if output.exists() and not output.is_dir():
        raise ExportError(f"--output {output} is a file, not a folder", hint="Give a folder to write into.")
    if output.is_dir() and any(output.iterdir()) and not (output / MARKER).is_file():
        raise ExportError(
            f"--output {output} already holds files that are not an earlier export",
            hint="Give an empty or new folder; an earlier `tuneport export` folder is replaced.",
        )


def _clear(output: Path) -> None:
    if output.is_dir():
        shutil.rmtree(output)


def export_job(
    job: str,
    fmt: str,
    *,
    quant: str | None = None,
    output: str | Path | None = None,
    store: Any | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a finished local job (``ftjob-...`` or its ``ft:`` name) as ``fmt`` into ``output``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if quant is not None and fmt not in ("gguf", "ollama"):
        raise ExportError(f"--quant applies to gguf and ollama exports, not to {fmt}",
                          hint=f"Leave --quant out for --format {fmt}.")  # fmt: skip
    source = job_source(job, store=store)
    suffix = f"-{quant or 'f16'}" if fmt in ("gguf", "ollama") else ""
    out = Path(output).expanduser() if output else Path.cwd() / f"{source.job_id}-{fmt}{suffix}"
    return export_source(source, fmt, quant=quant, output=out, progress=progress)


def export_source(
    source: ExportSource,
    fmt: str,
    *,
    quant: str | None = None,
    output: Path,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export checked job outputs (see :func:`export_job`)."""
    say = progress or (lambda _message: None)
    started = time.monotonic()
    _check_output(output)
    result = ExportResult(job_id=source.job_id, format=fmt, quant=None, output=output.resolve())
    if fmt == "adapter":
        if source.adapter is None:
            raise ExportError(
                f"job {source.job_id} fine-tuned the whole model, so it has no adapter",
                hint="Export --format merged (the model folder), gguf or ollama.",
            )
        _clear(output)
        shutil.copytree(source.adapter, output)
    elif fmt == "merged":
        _clear(output)
        _merged(source, output, result, say)
    else:
        result.quant = quant or "f16"
        if result.quant not in QUANTS:
            raise ExportError(f"--quant {result.quant!r} is not one of {', '.join(QUANTS)}")
        _gguf(source, fmt, output, result, say)
    result.seconds = time.monotonic() - started
    (output / MARKER).write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    result.files = sorted(p.name for p in output.iterdir() if p.is_file())
    return result


def _merged(source: ExportSource, output: Path, result: ExportResult, say: Callable[[str], None]) -> None:
    if source.adapter is None:
        assert source.model is not None  # source_from_folders guarantees one of the two
        say(f"copying the fine-tuned model folder {source.model}")
        shutil.copytree(source.model, output, ignore=shutil.ignore_patterns("checkpoint-*", "*.pt"))
        result.notes.append("a full fine-tune: its model folder is the merged model")
        return
    say("merging the adapter into the base model and checking its logits against base + adapter")
    result.merge_check = merge_checked(source.base_path, source.adapter, output, CHECK_CONVERSATIONS).to_dict()


def _turns(tokenizer: Any, fmt: str, result: ExportResult) -> TurnFormat | None:
    try:
        return turn_format(render_with(tokenizer))
    except ExportError as exc:
        if fmt == "ollama":
            raise
        result.notes.append(f"no end-of-turn token written: {exc.message}")
        return None


def _gguf(source: ExportSource, fmt: str, output: Path, result: ExportResult, say: Callable[[str], None]) -> None:
    from transformers import AutoTokenizer

    quant = result.quant or "f16"
    folder = source.base_path if source.adapter is not None else source.model
    assert folder is not None
    gguf_plan(folder, quant)  # architecture, rope, biases, row sizes: before any merge
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.chat_template is None:
        raise ExportError(
            f"{folder} has no chat template, so the GGUF would carry no conversation format",
            hint="Fine-tune a model whose tokenizer_config.json has a chat_template (an instruct model).",
        )
    turns = _turns(tokenizer, fmt, result)
    config = json.loads((folder / "config.json").read_text("utf-8"))
    vocab = read_vocab(folder, tokenizer, int(config["vocab_size"]), turns.end_of_turn if turns else None)
    template = stops = None
    if fmt == "ollama":
        assert turns is not None
        special = [str(t) for t in tokenizer.all_special_tokens]
        stops = stop_strings(turns, special, tokenizer.eos_token)
        template = go_template(turns, bos_token=tokenizer.bos_token, add_bos=vocab.add_bos)
        modelfile_text(gguf_name=GGUF_NAME, template=template, stops=stops, system=source.system_prompt,
                       source="")  # fmt: skip  - refuses a system prompt a Modelfile cannot quote, before the work
    _clear(output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".merged-", dir=output) as scratch:
        model_dir = folder
        if source.adapter is not None:
            say("merging the adapter into the base model and checking its logits against base + adapter")
            model_dir = Path(scratch) / "merged"
            result.merge_check = merge_checked(source.base_path, source.adapter, model_dir,
                                               CHECK_CONVERSATIONS).to_dict()  # fmt: skip
        say(f"writing {GGUF_NAME} ({quant})")
        name = source.fine_tuned_model or source.job_id
        write_gguf(gguf_plan(model_dir, quant), vocab, output / GGUF_NAME, name=name)
    if fmt == "ollama":
        assert template is not None and stops is not None
        text = modelfile_text(
            gguf_name=GGUF_NAME, template=template, stops=stops, system=source.system_prompt,
            source=f"Written by `tuneport export {source.job_id} --format ollama --quant {quant}`; "
            f"build it with `ollama create NAME -f Modelfile` in this folder.",
        )  # fmt: skip
        (output / "Modelfile").write_text(text, "utf-8")
        result.stops = stops
        result.system_prompt = source.system_prompt is not None
