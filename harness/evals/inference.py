"""What serving a cell's model costs on the evaluation machine: prompt throughput and per-token generation latency.

Measured after the suites, on the first PROMPTS test prompts of the cell's task (chat template
applied), so every cell of a matrix is timed on the same tokens:

- `prompt_tokens_per_s`: one forward over those prompts in one right-padded batch (non-padding
  tokens / seconds), the KV cache off: prefill throughput;
- `ms_per_token`: greedy decoding of the first prompt at batch 1 with exactly NEW_TOKENS new tokens
  (the end-of-text token is not allowed to stop it), minus the same call with one new token, per extra
  token: decode latency without the prefill;
- each the median of REPEATS after one warm-up; wall time of this process, which shares the machine
  with nothing else of the harness (a loaded machine shows in env.load_*);
- `merged`: the same two numbers for the model with its update folded into the weights
  (peft's merge_and_unload: LoRA, DoRA, IA3, OFT, LN tuning), where the strategy can merge without
  changing its numbers; `merge` says which (merged, already plain: full and BitFit train the weights
  themselves, or why not: adapters keep their modules, prompt learning keeps its tokens, merging into
  4-bit weights re-quantizes them);
- `virtual_tokens`: the prompt length prefix and prompt tuning add to every request.

    cost = measure(model, tok, cell)   # {"prompt_tokens_per_s": 812.0, "ms_per_token": 9.1, "merge": "merged",
                                       #  "merged": {"prompt_tokens_per_s": 950.3, "ms_per_token": 7.7}, ...}
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import torch

PROMPTS = 4
NEW_TOKENS = 16
REPEATS = 3


def prompts(tok, cell) -> list[str]:
    from harness.data import load_split, prompt_text
    from harness.data.native import spread

    rows = spread(load_split(cell.data, Path(cell.root), "test"), PROMPTS)
    return [prompt_text(tok, r, cell.data.template) for r in rows]


def _median_seconds(fn) -> float:
    fn()  # warm-up: first-call allocations and kernel choices
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def timings(model, tok, texts: list[str], bf16: bool | None = False) -> dict:
    """{"prompt_tokens_per_s", "ms_per_token"} of this model on these prompts (encoded as lm.greedy encodes them),
    under the autocast eval.bf16 (`bf16`) gives the suites."""
    from harness.data import bos_ids
    from harness.evals.lm import pad_id
    from harness.models import autocast

    model.eval()
    device = next(model.parameters()).device
    encoded = [bos_ids(tok, t) + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width, pad = max(map(len, encoded)), pad_id(tok)
    ids = torch.tensor([e + [pad] * (width - len(e)) for e in encoded], device=device)
    mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded], device=device)
    one = torch.tensor([encoded[0]], device=device)

    def generate(n: int):
        return lambda: model.generate(input_ids=one, attention_mask=torch.ones_like(one), max_new_tokens=n,
                                      min_new_tokens=n, do_sample=False, pad_token_id=pad, use_cache=True)

    with autocast(model, bf16):
        prefill = _median_seconds(lambda: model(input_ids=ids, attention_mask=mask, use_cache=False))
        decode = (_median_seconds(generate(NEW_TOKENS)) - _median_seconds(generate(1))) / (NEW_TOKENS - 1)
    return {"prompt_tokens_per_s": round(sum(map(len, encoded)) / prefill, 1),
            "ms_per_token": round(1000 * max(decode, 0.0), 3)}


def merge_plan(model) -> tuple[str, bool]:
    """(what `merged` means for this model, whether to time a merged copy)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        if any(type(m).__name__ == "WithAdapter" for m in model.modules()):
            return "not merged: bottleneck adapters keep their own modules", False
        return "already plain: the strategy trains the model's own weights", False
    if model.peft_config[model.active_adapter].is_prompt_learning:
        return "not merged: prompt learning keeps its virtual tokens", False
    if any("4bit" in type(m).__name__ for m in model.modules()):
        return "not merged: folding the update into 4-bit weights re-quantizes them", False
    return "merged", True


def virtual_tokens(model) -> int:
    from peft import PeftModel

    if isinstance(model, PeftModel):
        config = model.peft_config[model.active_adapter]
        if config.is_prompt_learning:
            return int(config.num_virtual_tokens)
    return 0


def measure(model, tok, cell) -> dict:
    """The cell's inference cost (module docstring), in the suites' precision; the model is left as it was."""
    texts = prompts(tok, cell)
    out = {**timings(model, tok, texts, cell.eval.bf16), "prompts": len(texts), "new_tokens": NEW_TOKENS,
           "virtual_tokens": virtual_tokens(model)}
    out["merge"], merge = merge_plan(model)
    if merge:  # merged in float32 (outside any autocast), timed as the model is
        merged = copy.deepcopy(model).merge_and_unload()
        out["merged"] = timings(merged, tok, texts, cell.eval.bf16)
        del merged
    return out
