"""Built-in fine-tuning strategies; importing this package registers them.

A third-party package adds one through the `harness.strategies` entry-point group.
"""

from strategies import adapter, bitfit, dora, full, ia3, ln_tuning, lora, oft, prefix, qlora  # noqa: F401  (imported to register them)
from strategies.base import STRATEGIES, Strategy, TrainDefaults, count_trainable, mark_trainable, register_strategy

__all__ = ["STRATEGIES", "Strategy", "TrainDefaults", "count_trainable", "mark_trainable", "register_strategy"]
