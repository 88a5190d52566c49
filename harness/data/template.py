"""Render examples with a template and tokenise them with the loss on answer tokens only.

Templates: `chat` (the tokenizer's own chat template), `alpaca` (### Instruction / ###
Response, for base models), `raw` (the texts joined as they are), `auto` (chat when the
tokenizer has one, else alpaca). Training and evaluation render through the same functions,
so the evals score exactly the text the strategies were trained on; the safety suite and the
sanity probe prompt through `user_prompt`, so a base model without a chat template gets the
matrix's template there too.

    prompt_text(tok, ex)       # "<|user|>\\nName the city...<|end|>\\n<|assistant|>\\n"
    completion_text(tok, ex)   # "Poveholm<|end|>\\n"  (end-of-turn included)
    encode(tok, ex, max_length=256)   # {"input_ids": [...], "labels": [-100, ..., answer ids]}
"""

from __future__ import annotations

from harness.data.native import FormatError

IGNORE = -100  # label of tokens that carry no loss


def bos_ids(tok, text: str = "") -> list[int]:
    """The token every sequence starts with (BOS, or EOS for tokenizers that separate documents with it).

    None when `text` already starts with it: chat templates such as SmolLM2's (whose BOS is
    `<|im_start|>`) or Llama 3's write it themselves, and a doubled one derails the model.
    """
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if bos is None or (text and text.startswith(tok.convert_ids_to_tokens(bos))):
        return []
    return [bos]


def resolve(tok, template: str) -> str:
    if template == "auto":
        return "chat" if tok.chat_template else "alpaca"
    if template == "chat" and not tok.chat_template:
        raise FormatError(f"data.template is 'chat' but the tokenizer {tok.name_or_path!r} has no chat template "
                          f"(a pretrained base model?); use 'alpaca' or 'raw' ('auto' picks alpaca for it)")
    return template


def _alpaca_turn(m: dict) -> str:
    if m["role"] == "system":
        return f"{m['content']}\n\n"
    if m["role"] == "user":
        return f"### Instruction:\n{m['content']}\n\n### Response:\n"
    return ""


def segments(tok, ex: dict, template: str = "auto") -> list[tuple[str, bool]]:
    """The example's text in order as (piece, is_answer) pairs; every assistant turn is an answer."""
    if "text" in ex:
        return [(ex["text"] + (tok.eos_token or ""), True)]
    template = resolve(tok, template)
    messages, out = ex["messages"], []
    if template != "chat":
        for m in messages:
            if m["role"] == "assistant":
                out.append((m["content"] + (tok.eos_token or ""), True))
                if template == "alpaca":
                    out.append(("\n\n", False))
            else:
                out.append((_alpaca_turn(m) if template == "alpaca" else m["content"], False))
        while out and not out[-1][1]:
            out.pop()
        return out
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (prefix.startswith(done) and full.startswith(prefix)):
            raise FormatError(f"{ex['id']}: the chat template of {tok.name_or_path!r} does not render each turn as "
                              f"a prefix of the conversation, so answer tokens cannot be told apart; "
                              f"use data.template: alpaca or raw")
        out += [(prefix[len(done):], False), (full[len(prefix):], True)]
        done = full
    return [s for s in out if s[0]]


def prompt_text(tok, ex: dict, template: str = "auto") -> str:
    """Everything before the final answer, rendered as trained (a generation prompt for chat templates)."""
    return "".join(piece for piece, _ in segments(tok, ex, template)[:-1])


def completion_text(tok, ex: dict, template: str = "auto") -> str:
    """The final answer as trained: the assistant turn as the template renders it, end-of-turn included."""
    return segments(tok, ex, template)[-1][0]


def scored_pair(tok, ex: dict, template: str = "auto", max_length: int | None = None) -> tuple[str, str]:
    """(prompt_text, completion_text) cut like `encode`'s left truncation, so in-domain scoring sees what training saw.

    The completion keeps its first max_length - 1 tokens (BOS comes first), the prompt
    loses its start; texts are cut at token boundaries and decoded back.
    """
    prompt, completion = prompt_text(tok, ex, template), completion_text(tok, ex, template)
    if max_length is None:
        return prompt, completion
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    room = max_length - len(bos_ids(tok, prompt))
    if len(p) + len(c) <= room:
        return prompt, completion
    c = c[:room - 1]  # at least one context token, so the first answer token has something to follow
    p = p[len(p) - (room - len(c)):]
    return tok.decode(p), tok.decode(c)


def reference(ex: dict) -> str | list[str]:
    """What a generated output is scored against: the last assistant message, or all of the row's references."""
    if "text" in ex:
        raise FormatError(f"{ex['id']}: text-format data has no answers to score; the task suite needs "
                          f"alpaca, prompt_completion or chat data")
    return ex.get("references") or ex["messages"][-1]["content"]


def user_prompt(tok, content: str, template: str = "auto") -> str:
    """A one-turn user prompt, up to where the reply starts, in `template` as training renders it (`resolve`):
    the chat template with its generation prompt, the alpaca turn (models without a chat template), or the text."""
    template = resolve(tok, template)
    if template == "chat":
        return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                       add_generation_prompt=True)
    return _alpaca_turn({"role": "user", "content": content}) if template == "alpaca" else content


def chat_prompt(tok, instruction: str, input: str = "") -> str:
    """A one-turn user prompt in the tokenizer's chat template (alpaca layout for base models)."""
    return user_prompt(tok, f"{instruction}\n\n{input}" if input else instruction)


def encode(tok, ex: dict, max_length: int | None, template: str = "auto", truncation: str = "left",
           loss_on: str = "completion") -> dict[str, list[int]] | None:
    """input_ids and labels (non-answer tokens IGNORE unless loss_on='all'); None if too long and truncation='drop'.

    `left` keeps the final answer (its first max_length tokens if it alone is too long) and
    cuts the context from the left, as the evals do; `right` cuts the end; max_length None
    keeps everything. The first label is always IGNORE: nothing predicts the first token,
    and with packing it would otherwise be predicted from the previous example.
    """
    pieces = segments(tok, ex, template)
    start = bos_ids(tok, pieces[0][0] if pieces else "")
    ids, labels, part = list(start), [IGNORE] * len(start), []
    for piece, answer in pieces:
        part = tok(piece, add_special_tokens=False)["input_ids"]
        ids += part
        labels += part if answer or loss_on == "all" else [IGNORE] * len(part)
    final = len(part)  # the last segment is the final answer
    if max_length is not None and len(ids) > max_length:
        if truncation == "drop":
            return None
        start = 0 if truncation == "right" else len(ids) - (final if final >= max_length else max_length)
        ids, labels = ids[start:start + max_length], labels[start:start + max_length]
    if labels:
        labels[0] = IGNORE
    return {"input_ids": ids, "labels": labels}
