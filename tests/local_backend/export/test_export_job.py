"""``tuneport export JOB``: the job-level checks (before any long work), the merged model's logit check, the CLI."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from _export_support import add_job

from tuneport.jobs.store import Store
from tuneport.local_backend.export import merge as merge_module
from tuneport.local_backend.export.errors import ExportError
from tuneport.local_backend.export.run import MARKER, export_job
from tuneport.local_backend.export.source import common_system_prompt
from tuneport.local_backend.export.turns import CHECK_CONVERSATIONS


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def _tp(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    from tuneport.cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_merged_export_matches_base_plus_adapter(tiny_model, tiny_adapter, tokenizer, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with Store() as store:
        add_job(store, "ftjob-merged000001", base=tiny_model, adapter=tiny_adapter)
    result = export_job("ftjob-merged000001", "merged", output=tmp_path / "m")
    check = result.merge_check
    assert check["dtype"] == "float32" and check["relative_diff"] <= check["tolerance"] == 1e-4
    assert check["tokens"] > 50 and {"model.safetensors", "tokenizer.json", MARKER} <= set(result.files)

    ids = tokenizer.apply_chat_template(CHECK_CONVERSATIONS[2], add_generation_prompt=True)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    base_logits = _logits(base, ids)
    adapted = _logits(PeftModel.from_pretrained(base, str(tiny_adapter)).eval(), ids)
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32).eval()
    assert (adapted - base_logits).abs().max() > 1e-2  # the adapter changes the model
    assert (_logits(merged, ids) - adapted).abs().max() < 1e-4


def test_a_merge_that_drifts_is_refused_and_nothing_is_left(tiny_model, tiny_adapter, tmp_path, monkeypatch) -> None:
    real_save = merge_module.save_full_model

    def corrupting_save(model, tokenizer, out):  # what a merge in the wrong order / dtype does to one weight
        with torch.no_grad():
            model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
        return real_save(model, tokenizer, out)

    monkeypatch.setattr(merge_module, "save_full_model", corrupting_save)
    with Store() as store:
        add_job(store, "ftjob-drift0000001", base=tiny_model, adapter=tiny_adapter)
    with pytest.raises(ExportError, match="does not compute what base \\+ adapter computes") as exc:
        export_job("ftjob-drift0000001", "merged", output=tmp_path / "m")
    assert "float32 allows 1e-04" in exc.value.message and "--format adapter" in exc.value.hint
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m.merging-*"))


def test_adapter_export_copies_the_checked_adapter(tiny_model, tiny_adapter, tmp_path) -> None:
    with Store() as store:
        add_job(store, "ftjob-adapter00001", base=tiny_model, adapter=tiny_adapter)
    result = export_job("ft:tiny:local:ter00001", "adapter", output=tmp_path / "a")  # by its model name
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(result.files)


@pytest.mark.parametrize(
    ("status", "backend", "match"),
    [("running", "local", "is running: only a succeeded job"), ("failed", "local", "is failed"),
     ("succeeded", "together", "trained by the together backend")],
)  # fmt: skip
def test_jobs_without_a_final_local_model_are_refused(tiny_model, tiny_adapter, tmp_path, status, backend, match):
    with Store() as store:
        add_job(store, "ftjob-notready0001", base=tiny_model, adapter=tiny_adapter, status=status, backend=backend)
    with pytest.raises(ExportError, match=match):
        export_job("ftjob-notready0001", "gguf", output=tmp_path / "g")
    assert not (tmp_path / "g").exists()
    with pytest.raises(ExportError, match="no job 'ftjob-unknown' in the local store"):
        export_job("ftjob-unknown", "gguf")


def test_an_adapter_for_another_base_is_refused_before_any_work(tiny_model, tiny_adapter, tmp_path) -> None:
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other-base"  # same architecture, another size: hidden 64 instead of 128
    other.mkdir()
    config = json.loads((tiny_model / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    weights = {k: v[..., :64] if v.shape[-1] == 128 else v for k, v in load_file(str(tiny_model / "model.safetensors")).items()}
    save_file(weights, str(other / "model.safetensors"))
    with Store() as store:
        add_job(store, "ftjob-otherbase001", base=other, adapter=tiny_adapter)
    started = time.monotonic()
    with pytest.raises(ExportError, match="adapter does not belong to its base model") as exc:
        export_job("ftjob-otherbase001", "ollama", output=tmp_path / "o")
    assert "was trained on" in exc.value.message and str(tiny_model) in exc.value.message  # its declared base
    assert time.monotonic() - started < 10 and not (tmp_path / "o").exists()

    # A declared base that is a Hub id cannot be compared by folder: its sizes are (hidden 128 against 64).
    hub = tmp_path / "hub-adapter"
    shutil.copytree(tiny_adapter, hub)
    conf = json.loads((hub / "adapter_config.json").read_text())
    (hub / "adapter_config.json").write_text(json.dumps({**conf, "base_model_name_or_path": "org/some-model"}))
    with Store() as store:
        add_job(store, "ftjob-otherbase002", base=other, adapter=hub)
    with pytest.raises(ExportError, match="adapter does not belong to its base model") as exc:
        export_job("ftjob-otherbase002", "gguf", output=tmp_path / "o")
    assert "128" in exc.value.message and "64" in exc.value.message and not (tmp_path / "o").exists()


def test_argument_and_output_folder_checks(tiny_model, tiny_adapter, tmp_path) -> None:
    with Store() as store:
        add_job(store, "ftjob-args00000001", base=tiny_model, adapter=tiny_adapter)
        add_job(store, "ftjob-fullft000001", base=tiny_model, model=tiny_model)
    with pytest.raises(ExportError, match="--quant applies to gguf and ollama"):
        export_job("ftjob-args00000001", "merged", quant="q8_0")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="already holds files that are not an earlier export"):
        export_job("ftjob-args00000001", "adapter", output=busy)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="fine-tuned the whole model, so it has no adapter"):
        export_job("ftjob-fullft000001", "adapter", output=tmp_path / "x")
    again = export_job("ftjob-args00000001", "adapter", output=tmp_path / "a")
    assert export_job("ftjob-args00000001", "adapter", output=tmp_path / "a").files == again.files  # replaced


def test_system_prompt_only_when_every_example_opens_with_it(tmp_path) -> None:
    def write(records) -> Path:
        p = tmp_path / f"{len(list(tmp_path.iterdir()))}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in records))
        return p

    sys_msg = {"role": "system", "content": "Be brief."}
    turn = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert common_system_prompt(write([{"messages": [sys_msg, *turn]}] * 3)) == "Be brief."
    assert common_system_prompt(write([{"messages": [sys_msg, *turn]}, {"messages": turn}])) is None
    other = {"role": "system", "content": "Be long."}
    assert common_system_prompt(write([{"messages": [sys_msg, *turn]}, {"messages": [other, *turn]}])) is None
    dpo = {"input": {"messages": [sys_msg, turn[0]]}, "preferred_output": [turn[1]]}
    assert common_system_prompt(write([dpo, dpo])) == "Be brief."


def test_cli_ollama_export(capsys, tiny_model, tiny_adapter, tmp_path) -> None:
    train = tmp_path / "train.jsonl"
    sys_msg = {"role": "system", "content": "You answer billing questions."}
    train.write_text(json.dumps({"messages": [sys_msg, {"role": "user", "content": "q"},
                                              {"role": "assistant", "content": "a"}]}) + "\n")  # fmt: skip
    with Store() as store:
        add_job(store, "ftjob-cli000000001", base=tiny_model, adapter=tiny_adapter, training=train)
    code, out, err = _tp(capsys, "export", "ftjob-cli000000001", "--format", "ollama", "--quant", "q8_0",
                         "--output", str(tmp_path / "ollama"))  # fmt: skip
    assert code == 0, err
    assert "exported ftjob-cli000000001 as ollama (q8_0)" in out and "stops at: <|end|>" in out
    assert "ollama create NAME -f Modelfile" in out and "merge check: logits within" in out
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert "FROM ./model.gguf" in modelfile and 'SYSTEM """You answer billing questions."""' in modelfile
    assert (tmp_path / "ollama" / "model.gguf").stat().st_size > 100_000
    assert not [p for p in (tmp_path / "ollama").iterdir() if p.name.startswith(".")]  # no scratch left

    code, out, err = _tp(capsys, "export", "ftjob-cli000000001", "--format", "gguf", "--json",
                         "--output", str(tmp_path / "g"))  # fmt: skip
    assert code == 0 and json.loads(out)["files"] == ["model.gguf", MARKER]

    code, out, err = _tp(capsys, "export", "ftjob-nope", "--format", "gguf")
    assert code != 0 and "error: no job 'ftjob-nope'" in err and "hint:" in err
