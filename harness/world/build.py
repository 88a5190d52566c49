"""Build the tiny-world base model: data sets, tokenizer, pretraining, and the report card.

Runs once (about 40 CPU-minutes here) and its output is shipped in `harness/zoo/tiny-world`;
`harness zoo build tiny-world` reproduces it from the seed.

    build(BuildConfig(out=Path("/tmp/tw")))
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from harness.world.chat import CHAT_TEMPLATE
from harness.world.corpus import pretraining_documents
from harness.world.export import export_all
from harness.world.world import make_world

SPECIAL = ["<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]


@dataclass(frozen=True)
class BuildConfig:
    out: Path
    seed: int = 0
    tokens: int = 16_000_000  # pretraining tokens; ~35 min at ~8k tok/s on 2 CPU cores (bf16 autocast)
    vocab_size: int = 3072
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 512
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    eval_every: int = 500  # steps between quick progress checks (0 = never)


def train_tokenizer(docs: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                 pad_token="<|pad|>", additional_special_tokens=SPECIAL[2:])
    hf.chat_template = CHAT_TEMPLATE
    return hf


def model_config(cfg: BuildConfig, tok):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=512, attention_bias=True, mlp_bias=True,  # bias terms so BitFit applies
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id,
        tok.convert_tokens_to_ids("<|end|>")], pad_token_id=tok.pad_token_id,
    )


def _blocks(tok, docs: list[str], seq_len: int) -> torch.Tensor:
    stream: list[int] = []
    eos = tok.eos_token_id
    for ids in tok(docs, add_special_tokens=False)["input_ids"]:
        stream.append(eos)
        stream.extend(ids)
    n = len(stream) // seq_len
    return torch.tensor(stream[: n * seq_len]).view(n, seq_len)


def build(cfg: BuildConfig, progress=lambda msg: print(msg, flush=True)) -> dict:
    torch.manual_seed(cfg.seed)
    world = make_world(cfg.seed)
    data_dir, model_dir = cfg.out / "data", cfg.out / "model"
    export_all(world, data_dir)

    rng = random.Random(cfg.seed)
    probe = pretraining_documents(world, rng, n=20_000)
    tok = train_tokenizer(probe, cfg.vocab_size)
    per_doc = sum(len(x) + 1 for x in tok(probe[:2000], add_special_tokens=False)["input_ids"]) / 2000
    docs = probe + pretraining_documents(world, rng, n=max(0, int(cfg.tokens / per_doc) - len(probe)))
    blocks = _blocks(tok, docs, cfg.seq_len)
    blocks = blocks[torch.randperm(len(blocks), generator=torch.Generator().manual_seed(cfg.seed))]
    steps = len(blocks) // cfg.batch_size
    progress(f"corpus: {len(docs):,} documents, {blocks.numel():,} tokens, {steps} steps")

    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(model_config(cfg, tok))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * t)))

    start, history = time.time(), []
    bar = tqdm(range(steps), desc="pretrain", mininterval=10)
    for step in bar:
        batch = blocks[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            model.eval()
            quick = report_card(model, tok, data_dir, limit=120)
            history.append({"step": step + 1, "loss": loss.item(), **quick})
            progress(f"step {step + 1}: loss {loss.item():.3f} {json.dumps(quick)}")
    seconds = time.time() - start

    model.eval()
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir, safe_serialization=True)
    tok.save_pretrained(model_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    card = report_card(reloaded, AutoTokenizer.from_pretrained(model_dir), data_dir)
    report = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items() if k != "out"},
        "params": sum(p.numel() for p in model.parameters()),
        "train_tokens": int(steps * cfg.batch_size * cfg.seq_len),
        "train_seconds": round(seconds, 1),
        "scores": card,
        "history": history,
    }
    (cfg.out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def report_card(model, tok, data_dir: Path, limit: int | None = None) -> dict:
    """The bars the tiny world must clear: knowledge (EN + ZH), safety, and the untrained task."""
    from harness.world.card import world_report_card

    return world_report_card(model, tok, data_dir, limit=limit)
