"""A model without a chat template (a pretrained base such as Gemma 3 270M) is prompted with the matrix's template
(alpaca or raw) in every suite, as in training; preflight says so and refuses `data.template: chat` for it."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY_WORLD

from harness import store
from harness.cli import main

MATRIX = """
name: base
models: {model}
data: {{path: {world}/record, truncation: drop{template}}}
budget: {{tokens: 200}}
train: {{batch_size: 4}}
strategies: [full]
eval:
  suites: [task, safety]
  safety: {world}
  limit: 4
  max_new_tokens: 8
  inference: false
"""


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory):
    """The tiny-world model with its chat template removed: the shape of a pretrained base model."""
    out = tmp_path_factory.mktemp("no-chat-template") / "model"
    shutil.copytree(TINY_WORLD / "model", out)
    (out / "chat_template.jinja").unlink()
    config = json.loads((out / "tokenizer_config.json").read_text("utf-8"))
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


def _matrix(tmp_path, model, template: str = ""):
    path = tmp_path / "base.yaml"
    path.write_text(MATRIX.format(model=model, world=TINY_WORLD / "data", template=template), encoding="utf-8")
    return path


def test_user_prompts_follow_the_template_resolution(base_model_dir, world_tok):
    from transformers import AutoTokenizer

    from harness.data.native import FormatError
    from harness.data.template import user_prompt
    from harness.evals import safety, sanity

    tok = AutoTokenizer.from_pretrained(base_model_dir)
    assert not tok.chat_template
    assert safety.chat(tok, "Hi?") == user_prompt(tok, "Hi?", "alpaca") == "### Instruction:\nHi?\n\n### Response:\n"
    assert safety.chat(tok, "Hi?", "raw") == "Hi?"
    with pytest.raises(FormatError, match="has no chat template"):
        safety.chat(tok, "Hi?", "chat")
    assert sanity._probe_chats(tok)[-1].startswith("### Instruction:\n")  # the prompted path is probed too
    assert safety.chat(world_tok, "Hi?") == world_tok.apply_chat_template(  # with a chat template: unchanged
        [{"role": "user", "content": "Hi?"}], tokenize=False, add_generation_prompt=True)


@pytest.mark.slow
def test_a_model_without_a_chat_template_runs_the_safety_and_task_suites_ok(tmp_path, base_model_dir, capsys):
    out = tmp_path / "results"
    assert main(["run", "--matrix", str(_matrix(tmp_path, base_model_dir)), "--out", str(out), "--in-process"]) == 0
    err = capsys.readouterr().err
    assert "has no chat template (a pretrained base model): training and the task, safety suites prompt it with " \
           "the alpaca template" in err
    results = store.load_all(out)
    assert sorted(r["label"] for r in results) == ["base", "full"]
    for r in results:
        assert r["status"] == "ok", (r["label"], r.get("reason"))
        assert {"refusal_harmful", "refusal_benign", "task_exact_match"} <= r["metrics"].keys()


def test_preflight_refuses_the_chat_template_for_a_model_without_one(tmp_path, base_model_dir, capsys):
    assert main(["validate", str(_matrix(tmp_path, base_model_dir, ", template: chat"))]) == 2
    err = capsys.readouterr().err
    assert "data.template is 'chat' but the tokenizer" in err and "has no chat template" in err
    assert "use 'alpaca' or 'raw'" in err
    assert main(["validate", str(_matrix(tmp_path, base_model_dir, ", template: raw"))]) == 0
    assert "no chat template" not in capsys.readouterr().err  # raw, as asked: nothing to say
