"""The learning-rate schedule: linear warmup, then linear decay that reaches zero at the last step trained.

It is transformers' ``get_linear_schedule_with_warmup`` with a horizon that can be re-planned. With
unlabelled questions an epoch's size is only known once its pseudo-labels are given, so the trainer plans
the steps from what it knows and re-plans at the start of every epoch. A horizon planned once, for the
most pseudo-labels an epoch may add, would leave the rate at a third of its peak when training ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from torch.optim.lr_scheduler import LambdaLR


class LinearSchedule(LambdaLR):
    """Linear warmup over ``warmup_steps``, then linear decay to zero at ``total_steps`` (see :meth:`replan`)."""

    def __init__(self, optimizer, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """The share of the peak learning rate at ``step``."""
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))

    def replan(self, total_steps: int) -> None:
        """Make the decay end at ``total_steps``; the rate of the next step follows the new horizon."""
        self.total_steps = total_steps
        for group, base, lr_lambda in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base * lr_lambda(self.last_epoch)


def steps_per_epoch(languages: Sequence[str | None], batch_size: int, one_language_per_batch: bool) -> int:
    """Batches in an epoch whose anchors have these languages (one batch group per language, or one in all)."""
    if not one_language_per_batch:
        return -(-len(languages) // batch_size)
    return sum(-(-n // batch_size) for n in Counter(languages).values())
