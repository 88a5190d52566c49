"""Turn raw rows of any supported layout into one example shape, checking fields and types.

An example is `{"id": where, "messages": [{"role", "content"}, ...]}` whose last message is
the assistant's answer (alpaca, prompt_completion, chat), or `{"id": where, "text": ...}`
for continued pre-training (text). `columns` renames a user's columns to ours first.

    ex = to_example(Row("a.jsonl:3", {"question": "2+2?", "answer": "4"}), "auto",
                    {"instruction": "question", "output": "answer"})
    ex["messages"][-1]   # {"role": "assistant", "content": "4"}
"""

from __future__ import annotations

from harness.data.native import FormatError
from harness.data.sources import Row

LAYOUTS = {  # format -> the fields that identify it (after column mapping)
    "chat": ("messages",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
ROLES = {"system": "system", "user": "user", "assistant": "assistant",  # ShareGPT names too
         "human": "user", "gpt": "assistant"}


def detect(keys, columns: dict) -> str:
    mapped = set(keys) | set(columns)
    if "conversations" in mapped:
        mapped.add("messages")
    for fmt, needed in LAYOUTS.items():
        if all(k in mapped for k in needed):
            return fmt
    return ""


def _str(row: Row, data: dict, key: str, required: bool = True) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise FormatError(f"{row.where}: missing field {key!r}")
        return ""
    if not isinstance(value, str):
        raise FormatError(f"{row.where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _messages(row: Row, data: dict) -> list[dict]:
    raw = data.get("messages", data.get("conversations"))
    if not isinstance(raw, list) or not raw:
        raise FormatError(f"{row.where}: field 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise FormatError(f"{row.where}: messages[{i}] must be an object, got {type(m).__name__}")
        role, content = m.get("role", m.get("from")), m.get("content", m.get("value"))
        if role not in ROLES:
            raise FormatError(f"{row.where}: messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise FormatError(f"{row.where}: messages[{i}].content must be a string, got {type(content).__name__}")
        out.append({"role": ROLES[role], "content": content})
    if out[-1]["role"] != "assistant":
        raise FormatError(f"{row.where}: the last message must be the assistant's answer, got {out[-1]['role']!r}")
    return out


def _alpaca(row: Row, data: dict) -> list[dict]:
    """Alpaca (and LLaMA-Factory's alpaca: optional system and history of [question, answer] pairs)."""
    instruction, extra = _str(row, data, "instruction"), _str(row, data, "input", required=False)
    messages = [{"role": "system", "content": _str(row, data, "system", False)}] if data.get("system") else []
    history = data.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, list) and len(h) == 2 and all(
            isinstance(t, str) for t in h) for h in history):
        raise FormatError(f"{row.where}: field 'history' must be a list of [question, answer] string pairs")
    for question, answer in history:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    content = f"{instruction}\n\n{extra}" if extra else instruction
    return messages + [{"role": "user", "content": content},
                       {"role": "assistant", "content": _str(row, data, "output")}]


def to_example(row: Row, fmt: str, columns: dict[str, str | list[str]], instruction: str | None = None) -> dict:
    """The example for one row; FormatError names the row's file and line and what is wrong.

    `columns` may map output to several columns (DialogSum's summary1..3): the first one the
    row has is the answer trained on, and every one it has is a reference it is scored against.
    `instruction` is put in for rows that have none (a task whose rows hold only the input).
    """
    data = {"instruction": instruction, **row.data} if instruction else dict(row.data)
    references = None
    for ours, theirs in columns.items():
        names = [theirs] if isinstance(theirs, str) else theirs
        present = [n for n in names if n in row.data]
        if not present:
            raise FormatError(f"{row.where}: column {' or '.join(map(repr, names))} (mapped to {ours!r} by "
                              f"data.columns) is missing; the row has {sorted(row.data)}")
        data[ours] = row.data[present[0]]
        if not isinstance(theirs, str):
            references = [_str(row, row.data, n) for n in present]
    if fmt == "auto":
        fmt = detect(data, {})
        if not fmt:
            raise FormatError(f"{row.where}: cannot tell the layout from the fields {sorted(row.data)}; expected "
                              f"{' or '.join('+'.join(v) for v in LAYOUTS.values())}, or map yours with "
                              f"data.columns (e.g. {{instruction: question, output: answer}})")
    if fmt == "text":
        return {"id": row.where, "text": _str(row, data, "text")}
    if fmt == "chat":
        ex = {"id": row.where, "messages": _messages(row, data)}
    elif fmt == "prompt_completion":
        ex = {"id": row.where, "messages": [{"role": "user", "content": _str(row, data, "prompt")},
                                            {"role": "assistant", "content": _str(row, data, "completion")}]}
    else:
        ex = {"id": row.where, "messages": _alpaca(row, data)}
        if instruction and data["instruction"] == instruction:
            ex["instruction"] = instruction  # the fixed one: not part of the row's own text (example_text)
    return {**ex, "references": references} if references and len(references) > 1 else ex


def example_text(ex: dict) -> str:
    """All the text of an example (what dedup and the contamination check compare).

    A fixed `data.instruction` is left out: every row shares it, so it would join any two rows
    that open alike into a shared n-gram.
    """
    if "text" in ex:
        return ex["text"]
    text = "\n".join(m["content"] for m in ex["messages"])
    return text.replace(ex["instruction"], "", 1).lstrip() if ex.get("instruction") else text


def empty_reason(ex: dict) -> str | None:
    if "text" in ex:
        return "empty" if not ex["text"].strip() else None
    if not ex["messages"][-1]["content"].strip():
        return "empty_answer"
    if not any(m["content"].strip() for m in ex["messages"][:-1] if m["role"] == "user"):
        return "empty_prompt"
    return None
