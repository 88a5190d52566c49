"""Built-in fine-tuning strategies; importing this package registers them.

A third-party package adds one through the `harness.strategies` entry-point group.
"""

from strategies import (  # noqa: F401  (imported to register them)
    adapter, bitfit, dora, full, ia3, lntuning, lora, oft, prefix, qlora)
from strategies.base import STRATEGIES, Strategy, TrainDefaults, count_trainable, mark_trainable, register_strategy

__all__ = ["STRATEGIES", "Strategy", "TrainDefaults", "count_trainable", "mark_trainable", "register_strategy"]
