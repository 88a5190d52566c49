"""Item identity: a stable id per evaluated item (a hash of its content), and joining two cells' items by id.

Pairing two cells item by item is only sound when the i-th score of one is the same item as
the i-th score of the other. Positions do not guarantee that: an eval file edited but kept at
the same size pairs item-to-wrong-item. So every per-item list is stored with ids made from
what the item *is* (prompt and reference, question and choices, document text), not where it
sits, and `align` joins on them:

- the same ids: paired as they are;
- partly shared: the shared items are paired, and the note says how many of each side were left out;
- no id in common: `PairingError` (the two cells did not measure the same thing);
- a side without ids (items files written before ids were stored): paired by position when the
  counts match, with a note saying so; otherwise None (the caller falls back to unpaired).

    ids = item_ids([("Fill in the card", "Ada, city: Rita"), ...])
    pairing = align(ids_a, ids_b, len(scores_a), len(scores_b))
    pairing.a, pairing.b, pairing.note      # index arrays into each side, and what to tell the reader
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np


class PairingError(ValueError):
    """Two cells' items share no id: they scored different items and cannot be compared item by item."""


def item_id(*parts) -> str:
    """16 hex digits of the SHA-256 of the item's content (any JSON-serialisable parts)."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def item_ids(contents: list) -> list[str]:
    """One id per item; an item repeated in the set gets `~2`, `~3`... in order, so every id is unique."""
    seen: Counter = Counter()
    out = []
    for parts in contents:
        base = item_id(*parts) if isinstance(parts, tuple) else item_id(parts)
        seen[base] += 1
        out.append(base if seen[base] == 1 else f"{base}~{seen[base]}")
    return out


@dataclass(frozen=True)
class Pairing:
    a: np.ndarray  # indices into side a's per-item lists
    b: np.ndarray  # indices into side b's, the same items in the same order
    by: str  # "id" or "position"
    note: str | None = None  # partial overlap or position pairing, said wherever the difference is shown

    @property
    def n(self) -> int:
        return len(self.a)


def align(a_ids: list[str] | None, b_ids: list[str] | None, n_a: int, n_b: int) -> Pairing | None:
    """Indices pairing side a's items with side b's; see the module docstring for the rules."""
    if a_ids is None or b_ids is None:
        if n_a != n_b:
            return None
        which = "either side" if a_ids is None and b_ids is None else "one side"
        return Pairing(np.arange(n_a), np.arange(n_b), "position",
                       f"no item ids on {which} (items written before ids were stored): paired by position")
    if len(a_ids) != n_a or len(b_ids) != n_b:
        raise PairingError(f"item ids do not match the scores ({len(a_ids)} ids for {n_a} scores, "
                           f"{len(b_ids)} for {n_b})")
    where = {i: k for k, i in enumerate(b_ids)}
    shared = [(k, where[i]) for k, i in enumerate(a_ids) if i in where]
    if not shared:
        raise PairingError(f"no item in common ({n_a} and {n_b} items, every id different): the two cells scored "
                           "different eval items")
    a, b = (np.array(x) for x in zip(*shared, strict=True))
    note = None
    if len(shared) < max(n_a, n_b):
        note = (f"paired the {len(shared)} items both sides scored ({n_a - len(shared)} only in the first, "
                f"{n_b - len(shared)} only in the second)")
    return Pairing(a, b, "id", note)


def example_ids(examples: list[dict]) -> list[str]:
    """Ids of data examples ({id, messages} or {id, text}): the prompt and its answer, or the text."""
    return item_ids([ex["messages"] if "messages" in ex else ex["text"] for ex in examples])


def example_groups(examples: list[dict]) -> list[str] | None:
    """The group each example was drawn with (the data's `group` column, see DataSpec), or None without one."""
    return [ex["group"] for ex in examples] if examples and all("group" in ex for ex in examples) else None


def labels(ids: dict[str, list[str]], groups: dict[str, list[str] | None]) -> dict:
    """The `_ids` / `_groups` entries a suite returns beside its per-item lists (keys without groups left out)."""
    return {"_ids": ids, "_groups": {k: g for k, g in groups.items() if g is not None}}
