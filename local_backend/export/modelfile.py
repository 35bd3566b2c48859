"""An Ollama Modelfile for an exported GGUF: ``FROM``, a Go ``TEMPLATE`` equal to the chat template, the stops.

The TEMPLATE is written from the model's :class:`~.turns.TurnFormat` (checked against the Jinja template on real
conversations), over Ollama's ``.Messages``: each message's header, content and footer; the footer of a last
assistant message left open (Ollama continues it); the generation prompt after a last non-assistant message.
Ollama puts the Modelfile's ``SYSTEM`` in front of a conversation that has no system message, so the job's system
prompt reaches the template the way the training data had it. Only system, user and assistant messages are
written: a tool message renders nothing (the formats' tool syntax is not a fixed per-turn string).
"""

from __future__ import annotations

import json

from tuneport.local_backend.export.errors import ExportError
from tuneport.local_backend.export.turns import TurnFormat

__all__ = ["go_template", "modelfile_text", "stop_strings"]


def _literal(text: str) -> str:
    """``text`` as template output: as is, or as a Go string action where it would end the template or the
    Modelfile's triple quotes."""
    if not text:
        return ""
    if "{{" in text or "}}" in text or '"' in text or "\\" in text:
        # JSON string escapes are Go string escapes, except "\/" which json.dumps never writes.
        return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
    return text


def go_template(fmt: TurnFormat, *, bos_token: str | None = None, add_bos: bool = False) -> str:
    """The Go template of ``fmt``. When llama.cpp adds BOS itself (``add_bos``), a leading BOS is left out.

    No ``{{-`` trim markers: every byte between actions is template output, so a footer ending in a newline keeps it.
    """
    prefix = fmt.prefix
    if add_bos and bos_token and prefix.startswith(bos_token):
        prefix = prefix[len(bos_token) :]
    roles = ["system", "user", "assistant"] if fmt.system else ["user", "assistant"]
    parts = [_literal(prefix), "{{ range $i, $_ := .Messages }}",
             "{{ $last := eq (len (slice $.Messages $i)) 1 }}"]  # fmt: skip
    if fmt.default_system:
        parts.append('{{ if and (eq $i 0) (ne .Role "system") }}' + _literal(fmt.default_system) + "{{ end }}")
    for n, role in enumerate(roles):
        keyword = "{{ if" if n == 0 else "{{ else if"
        after = _literal(fmt.after[role])
        if role == "assistant" and after:
            after = "{{ if not $last }}" + after + "{{ end }}"
        parts.append(f'{keyword} eq .Role "{role}" }}}}' + _literal(fmt.before[role]) + "{{ .Content }}" + after)
    parts.append("{{ end }}")
    parts.append('{{ if and $last (ne .Role "assistant") }}' + _literal(fmt.generation) + "{{ end }}")
    parts.append("{{ end }}")
    return "".join(parts)


def stop_strings(fmt: TurnFormat, special_tokens: list[str], eos_token: str | None) -> list[str]:
    """The end-of-turn tokens: special tokens in the assistant's footer, then the tokenizer's eos."""
    footer = fmt.end_of_turn
    found = sorted((footer.find(t), t) for t in set(special_tokens) if t and t in footer)
    stops = [t for _, t in found]
    if eos_token and eos_token not in stops:
        stops.append(eos_token)
    if not stops:
        stripped = footer.strip()
        if not stripped:
            raise ExportError(
                "the chat template ends an assistant turn with nothing and the tokenizer has no eos token, so "
                "there is no stop for Ollama",
                hint="Give the tokenizer an eos token (tokenizer_config.json) and train again.",
            )
        stops.append(stripped)
    return stops


def _triple_quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise ExportError(f'the {what} holds """, which a Modelfile cannot quote',
                          hint="Change the system prompt, or write the Modelfile by hand.")  # fmt: skip
    return f'"""{text}"""'


def modelfile_text(
    *, gguf_name: str, template: str, stops: list[str], system: str | None, source: str
) -> str:
    """The Modelfile: ``ollama create NAME -f Modelfile`` in its folder builds the model."""
    lines = [f"# {source}", f"FROM ./{gguf_name}", f"TEMPLATE {_triple_quoted(template, 'template')}"]
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in stops]
    if system:
        lines.append(f"SYSTEM {_triple_quoted(system, 'system prompt')}")
    return "\n".join(lines) + "\n"
