"""Chat template -> per-turn format -> Ollama TEMPLATE: the Go template renders what the Jinja template renders."""

from __future__ import annotations

import pytest
from _go_template import ollama_messages, render_go

from tuneport.local_backend.export.errors import ExportError
from tuneport.local_backend.export.modelfile import go_template, modelfile_text, stop_strings
from tuneport.local_backend.export.turns import CHECK_CONVERSATIONS, turn_format

# Conversations beyond the ones turn_format checks itself: long multi-turn, braces and quotes in content.
MORE = [
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
     {"role": "assistant", "content": "d"}, {"role": "user", "content": "e"}],
    [{"role": "system", "content": 'Use {{braces}} and "quotes"'}, {"role": "user", "content": "x\n\ny"}],
    [{"role": "user", "content": "  spaced  "}],
]  # fmt: skip
# (A template that trims contents, like Llama 3's, passes: contents without surrounding whitespace render the same.)

CHATML_WITH_DEFAULT = (
    "{%- if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif %}{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}"
)
NO_SYSTEM_ROLE = (
    "{{ bos_token }}{%- for m in messages %}{%- if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{%- endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] + '<end_of_turn>\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}<start_of_turn>model\n{%- endif %}"
)
FOLDS_SYSTEM = (
    "{%- set sys = messages[0]['content'] + '\n\n' if messages[0]['role'] == 'system' else '' %}"
    "{%- for m in messages if m['role'] != 'system' %}<turn>{{ (sys if loop.first else '') + m['content'] }}</turn>"
    "{%- endfor %}{%- if add_generation_prompt %}<turn>{%- endif %}"
)
NUMBERS_TURNS = (
    "{%- for m in messages %}[{{ loop.index }}:{{ m['role'] }}]{{ m['content'] }}[/]{%- endfor %}"
    "{%- if add_generation_prompt %}[assistant]{%- endif %}"
)


def jinja_render(template: str, bos: str = "<s>"):
    """Render like transformers does (sandboxed, trim_blocks, lstrip_blocks, raise_exception)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    compiled = env.from_string(template)
    return lambda messages, gen: compiled.render(messages=messages, add_generation_prompt=gen, bos_token=bos)


def _render_tokenizer(tokenizer):
    from tuneport.local_backend.export.turns import render_with

    return render_with(tokenizer)


def _assert_go_matches(fmt, render, conversations) -> None:
    template = go_template(fmt)
    for conversation in conversations:
        if not fmt.system and any(m["role"] == "system" for m in conversation):
            continue
        data = ollama_messages(conversation)
        if conversation[-1]["role"] == "assistant":
            # Ollama leaves a last assistant turn open (continues it): the template writes no footer for it.
            assert render_go(template, data) + fmt.end_of_turn == render(conversation, False), conversation
        else:
            assert render_go(template, data) == render(conversation, True), conversation


def test_tiny_chat_turns_and_go_template_equal_its_chat_template(tokenizer) -> None:
    render = _render_tokenizer(tokenizer)
    fmt = turn_format(render)
    assert fmt.prefix == "<|bos|>" and fmt.system and not fmt.default_system
    assert fmt.before == {"system": "<|system|>\n", "user": "<|user|>\n", "assistant": "<|assistant|>\n"}
    assert set(fmt.after.values()) == {"<|end|>\n"} and fmt.generation == "<|assistant|>\n"
    _assert_go_matches(fmt, render, CHECK_CONVERSATIONS + MORE)


def test_tiny_chat_go_template_ids_equal_the_chat_templates(tokenizer) -> None:
    """Token by token: what Ollama would tokenize equals what training tokenized."""
    fmt = turn_format(_render_tokenizer(tokenizer))
    template = go_template(fmt)
    for conversation in CHECK_CONVERSATIONS:
        if conversation[-1]["role"] == "assistant":
            conversation = conversation[:-1]
        expected = tokenizer.apply_chat_template(conversation, add_generation_prompt=True)
        expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
        text = render_go(template, ollama_messages(conversation))
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == expected


def test_chatml_with_a_default_system_prompt() -> None:
    render = jinja_render(CHATML_WITH_DEFAULT)
    fmt = turn_format(render)
    assert fmt.default_system == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert fmt.before["system"] == "<|im_start|>system\n" and fmt.end_of_turn == "<|im_end|>\n"
    _assert_go_matches(fmt, render, CHECK_CONVERSATIONS + MORE)
    assert stop_strings(fmt, ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], "<|endoftext|>") == [
        "<|im_end|>", "<|endoftext|>",
    ]  # fmt: skip


def test_a_format_without_a_system_role_gets_no_system_branch() -> None:
    render = jinja_render(NO_SYSTEM_ROLE, bos="<bos>")
    fmt = turn_format(render)
    assert not fmt.system and fmt.prefix == "<bos>" and fmt.before["assistant"] == "<start_of_turn>model\n"
    assert '"system"' not in go_template(fmt)
    _assert_go_matches(fmt, render, CHECK_CONVERSATIONS + MORE)


@pytest.mark.parametrize("template", [FOLDS_SYSTEM, NUMBERS_TURNS], ids=["folds-system", "numbers-turns"])
def test_templates_that_are_not_per_turn_are_refused_with_the_difference(template) -> None:
    with pytest.raises(ExportError, match="not a fixed per-turn format") as exc:
        turn_format(jinja_render(template))
    assert "--format gguf" in exc.value.hint


def test_llama_cpp_adds_bos_itself_so_the_go_template_leaves_it_out(tokenizer) -> None:
    fmt = turn_format(_render_tokenizer(tokenizer))
    assert go_template(fmt, bos_token="<|bos|>", add_bos=True).startswith("{{ range")
    assert go_template(fmt, bos_token="<|bos|>", add_bos=False).startswith("<|bos|>{{ range")


def test_braces_and_quotes_in_template_text_become_go_string_actions() -> None:
    render = jinja_render(
        "{%- for m in messages %}{{ '{{' }}{{ m['role'] }}\"{{ '}}' }}{{ m['content'] }}\\end{%- endfor %}"
        "{%- if add_generation_prompt %}{{ '{{' }}assistant\"{{ '}}' }}{%- endif %}"
    )
    fmt = turn_format(render)
    template = go_template(fmt)
    assert '{{ "{{user\\"}}" }}' in template
    _assert_go_matches(fmt, render, CHECK_CONVERSATIONS)


def test_modelfile_text_and_its_refusals(tokenizer) -> None:
    fmt = turn_format(_render_tokenizer(tokenizer))
    text = modelfile_text(gguf_name="model.gguf", template=go_template(fmt), stops=["<|end|>"],
                          system="Be brief.", source="test")  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "# test" and lines[1] == "FROM ./model.gguf" and lines[2].startswith('TEMPLATE """<|bos|>')
    assert 'PARAMETER stop "<|end|>"' in lines and lines[-1] == 'SYSTEM """Be brief."""'
    assert "SYSTEM" not in modelfile_text(gguf_name="m.gguf", template="x", stops=["a"], system=None, source="s")
    with pytest.raises(ExportError, match='holds """'):
        modelfile_text(gguf_name="m.gguf", template="x", stops=["a"], system='say """hi"""', source="s")
    assert stop_strings(fmt, list(tokenizer.all_special_tokens), tokenizer.eos_token) == ["<|end|>"]
