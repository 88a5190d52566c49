"""The data layer: user datasets in the formats people have, tokenised the same way for every strategy.

Sources: a json/jsonl/csv/parquet file, a folder of train/validation/test files, `zoo:NAME/TASK`,
or a hub dataset. Formats: alpaca, prompt_completion, chat (messages), text, or a column
mapping onto one of them. An example is `{"id": "file:line", "messages": [...]}` (the last
message is the answer) or `{"id", "text"}`; see DataSpec in harness/config.py for the keys.

    rows = load_split(cell.data, root, "test")                    # examples, hygiene applied
    prompt_text(tok, ex, cell.data.template), completion_text(...), reference(ex)
    train = prepare_train(cell, tok, results_dir)                 # budgeted token streams + data_report.json
"""

from harness.data.collate import budgeted, collator
from harness.data.dataset import SPLITS, check, item_text, load_split, train_examples
from harness.data.hygiene import item_key
from harness.data.prepare import clean, contaminated, prepare_train
from harness.data.template import (
                                   IGNORE,
                                   bos_ids,
                                   chat_prompt,
                                   completion_text,
                                   encode,
                                   prompt_text,
                                   reference,
                                   scored_pair,
)

__all__ = ["IGNORE", "SPLITS", "bos_ids", "budgeted", "chat_prompt", "check", "clean", "collator", "completion_text",
           "contaminated", "encode", "item_key", "item_text", "load_split", "prepare_train", "prompt_text",
           "reference", "scored_pair", "train_examples"]
