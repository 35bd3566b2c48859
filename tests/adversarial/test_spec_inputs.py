"""Issue 13 items 5, 6 and 11: hostile job spec files get a SpecError naming the file, never a hang or a traceback.

Reproductions: a ~1 KB YAML "billion laughs" spec (spun forever in the duplicate-key walk), YAML nested 500 deep
and JSON nested 1000 deep (RecursionError), a recursive alias, and ``learning_rate_multiplier: 1e300`` (OK in
``spec check``, refused by ``train``). Then hypothesis mutates valid YAML and TOML specs: each result is a spec or a
SpecError, nothing else.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneport.errors import SpecError
from tuneport.spec.jobspec import JobSpec, load_spec
from tuneport.spec.parsing import MAX_DEPTH, MAX_VALUES, read_yaml
from tuneport.spec.rates import BASE_LEARNING_RATES, learning_rate_problem

HEAD = "model: tiny-chat\ntraining_file: file-abc123\n"


def _laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + HEAD


def _problems(exc: pytest.ExceptionInfo[SpecError]) -> list[dict]:
    return [p.to_dict() for p in exc.value.findings]


def test_billion_laughs_is_refused_at_once_by_spec_check(tmp_path: Path) -> None:
    spec = tmp_path / "laughs.yaml"
    spec.write_text(_laughs(), encoding="utf-8")
    assert spec.stat().st_size < 1200  # the issue's ~1 KB file
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tuneport.cli.main", "spec", "check", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert done.returncode == SpecError.exit_code, done.stderr
    assert str(spec) in done.stderr
    assert f"expand to more than {MAX_VALUES:,} values" in done.stderr
    assert "Traceback" not in done.stderr


def test_billion_laughs_through_load_spec_names_the_line(tmp_path: Path) -> None:
    spec = tmp_path / "laughs.yaml"
    spec.write_text(_laughs(), encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    [problem] = _problems(exc)
    assert problem["file"] == str(spec)
    assert problem["line"] is not None and 1 <= problem["line"] <= 10


def test_a_shared_alias_within_the_bounds_is_fine_and_walked_once(tmp_path: Path) -> None:
    # the same mapping used twice: its duplicate key is reported once, at the first place it appears
    spec = tmp_path / "shared.yaml"
    spec.write_text(
        HEAD + "metadata: &m\n  team: a\n  team: b\nx: *m\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    problems = _problems(exc)
    duplicates = [p for p in problems if "duplicate key" in p["message"]]
    assert [(p["path"], p["line"]) for p in duplicates] == [("metadata.team", 5)]


def test_recursive_alias_is_a_spec_error(tmp_path: Path) -> None:
    spec = tmp_path / "loop.yaml"
    spec.write_text(HEAD + "local:\n  target_modules: &t [q_proj, *t]\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    [problem] = _problems(exc)
    assert "refers to a value that contains it" in problem["message"]
    assert problem["file"] == str(spec) and problem["line"] == 4


@pytest.mark.parametrize("style", ["flow", "block"])
def test_yaml_nested_500_deep_is_a_spec_error(tmp_path: Path, style: str) -> None:
    spec = tmp_path / "deep.yaml"
    if style == "flow":
        body = "metadata: " + "[" * 500 + "]" * 500 + "\n"
    else:
        body = "".join("  " * i + f"k{i}:\n" for i in range(500)) + "  " * 500 + "v: 1\n"
    spec.write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    [problem] = _problems(exc)
    assert f"nested more than {MAX_DEPTH} levels" in problem["message"]
    assert problem["file"] == str(spec)


def test_json_nested_1000_deep_is_a_spec_error(tmp_path: Path) -> None:
    spec = tmp_path / "deep.json"
    spec.write_text(
        '{"model": "tiny-chat", "training_file": "file-abc123", "metadata": ' + "[" * 1000 + "]" * 1000 + "}",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    assert f"nested more than {MAX_DEPTH} levels" in str(exc.value)
    assert str(spec) in str(exc.value)


@pytest.mark.parametrize(
    "body",
    [
        "x = " + "[" * 1000 + "]" * 1000 + "\n",  # tomllib parses arrays recursively
        "x."
        + ".".join(f"k{i}" for i in range(500))
        + " = 1\n",  # dotted keys: deep data, no parser recursion
    ],
    ids=["arrays", "dotted-keys"],
)
def test_toml_nested_too_deep_is_a_spec_error(tmp_path: Path, body: str) -> None:
    spec = tmp_path / "deep.toml"
    spec.write_text('model = "tiny-chat"\ntraining_file = "file-abc123"\n' + body, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    assert f"nested more than {MAX_DEPTH} levels" in str(exc.value)


def test_read_yaml_is_usable_for_other_documents() -> None:
    # The eval spec loader's shape: data, the node for line numbers, duplicate keys; its own words in errors.
    data, node, dups = read_yaml("dataset: a.jsonl\ndataset: b.jsonl\n", "eval.yaml", what="eval spec")
    assert data == {"dataset": "b.jsonl"} and node is not None
    assert [(p.path, p.line) for p in dups] == [("dataset", 2)]
    with pytest.raises(SpecError, match="invalid eval spec eval.yaml"):
        read_yaml("a: " + "[" * 300 + "]" * 300, "eval.yaml", what="eval spec")


# ---- item 11: one learning-rate validation for spec check and train -------------------------------------------


def test_learning_rate_multiplier_1e300_is_refused_with_the_trainers_words(tmp_path: Path) -> None:
    spec = tmp_path / "lr.yaml"
    spec.write_text(
        HEAD + "method:\n  supervised:\n    hyperparameters:\n      learning_rate_multiplier: 1e300\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    [problem] = _problems(exc)
    assert problem["path"] == "method.supervised.hyperparameters.learning_rate_multiplier"
    assert problem["line"] == 6
    rate = 2e-4 * 1e300
    assert (
        learning_rate_problem(rate) in problem["message"]
    )  # "must be in (0.0, 1.0], got 2.0000000000000003e+296"
    assert "at most 5000" in problem["message"]


@pytest.mark.parametrize("rate", [2e-4 * 1e300, 0.0, 5e-324 * 1e-10, 1.5])
def test_the_trainer_refuses_a_rate_with_the_same_words(tmp_path: Path, rate: float) -> None:
    # What spec check says about a resolved rate is what the trainer's config check raises for it.
    from tuneport.local_backend.training.train_config import TrainConfig

    config = TrainConfig(
        model=tmp_path, training_file=tmp_path / "t.jsonl", output_dir=tmp_path, learning_rate=rate
    )
    with pytest.raises(SpecError) as exc:
        config.validate()
    problem = learning_rate_problem(rate)
    assert problem is not None
    assert str(exc.value) == f"local training option `learning_rate`: {problem}"


@settings(max_examples=150, deadline=None)
@given(
    multiplier=st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False),
    method=st.sampled_from(["supervised", "dpo"]),
    finetuning_type=st.sampled_from(["lora", "full"]),
)
def test_spec_accepts_a_multiplier_exactly_when_the_trainer_accepts_its_rate(
    multiplier: float, method: str, finetuning_type: str
) -> None:
    data = {
        "model": "tiny-chat",
        "training_file": "file-abc123",
        "method": {"type": method, method: {"hyperparameters": {"learning_rate_multiplier": multiplier}}},
        "local": {"finetuning_type": finetuning_type},
    }
    trainer_ok = learning_rate_problem(BASE_LEARNING_RATES[(method, finetuning_type)] * multiplier) is None
    try:
        JobSpec.from_dict(data)
        spec_ok = True
    except SpecError:
        spec_ok = False
    assert spec_ok == trainer_ok


# ---- hypothesis: mutated spec files -------------------------------------------------------------------------

VALID_YAML = textwrap.dedent(
    """\
    model: tiny-chat
    training_file: file-abc123
    suffix: demo
    seed: 7
    metadata: {team: a, run: "1"}
    method:
      type: dpo
      dpo:
        hyperparameters: {n_epochs: 2, beta: 0.2, learning_rate_multiplier: 1.5}
    local:
      finetuning_type: lora
      lora_r: 8
      target_modules: [q_proj, v_proj]
      max_seq_length: 512
    """
)
VALID_TOML = textwrap.dedent(
    """\
    model = "tiny-chat"
    training_file = "file-abc123"
    seed = 7
    [method]
    type = "supervised"
    [method.supervised.hyperparameters]
    n_epochs = 3
    learning_rate_multiplier = 0.5
    [local]
    lora_r = 8
    target_modules = ["q_proj", "v_proj"]
    """
)
# Characters that mean something to YAML or TOML, and values that stress the checks.
_PIECES = list("{}[]:,-&*!|>'\"#=.\n\t ?%@`") + [
    "&a ",
    "*a",
    "<<: *a",
    "!!python/object:os.system",
    "!!binary",
    "1e300",
    "-1",
    ".nan",
    ".inf",
    "null",
    "~",
    "true",
    "2024-01-01",
    "0x1F",
    "[[[[",
    "{{{{",
    '"""',
    "\\u0000",
    "é",
    "\ufeff",
]


@st.composite
def _mutated(draw: st.DrawFn, base: str) -> str:
    text = base
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line"]))
        piece = draw(st.sampled_from(_PIECES) | st.text(max_size=4))
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)) :]
        elif kind == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines.insert(i, lines[i])
                text = "".join(lines)
    return text


def _load_or_spec_error(path: Path) -> None:
    try:
        spec = load_spec(path, check_files=False)
    except SpecError as exc:
        assert str(exc)  # a message, and findings the CLI can print
        assert all(p.message for p in exc.findings)
        return
    assert isinstance(spec, JobSpec)
    spec.spec_hash()  # a valid spec is a value that hashes


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_mutated(VALID_YAML))
def test_mutated_yaml_specs_are_specs_or_spec_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_or_spec_error(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_mutated(VALID_TOML))
def test_mutated_toml_specs_are_specs_or_spec_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_or_spec_error(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_mutated('{"model": "tiny-chat", "training_file": "file-abc123", "local": {"lora_r": 8}}'))
def test_mutated_json_specs_are_specs_or_spec_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_or_spec_error(path)
