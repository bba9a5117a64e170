"""The learning-rate schedule: transformers' linear warmup and decay, with a horizon re-planned once an
epoch's size is known (self-training learns it only when the epoch's pseudo-labels are given)."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from mlret_rag.finetune.schedule import LinearSchedule, steps_per_epoch


def _rates(scheduler, optimizer, steps: int, replan: dict[int, int] | None = None) -> list[float]:
    rates = []
    for step in range(steps):
        if replan and step in replan:
            scheduler.replan(replan[step])
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _optimizer():
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)


def test_without_replanning_it_is_transformers_linear_schedule():
    ours, theirs = _optimizer(), _optimizer()
    expected = _rates(get_linear_schedule_with_warmup(theirs, 5, 40), theirs, 45)
    assert _rates(LinearSchedule(ours, 5, 40), ours, 45) == expected


def test_a_shorter_horizon_makes_the_rate_reach_zero_at_the_last_step_trained():
    optimizer = _optimizer()
    scheduler = LinearSchedule(optimizer, 4, 100)  # planned for a bound on the pseudo-labels
    rates = _rates(scheduler, optimizer, 30, replan={10: 30})  # the second epoch shows 30 steps in all
    assert rates[:10] == pytest.approx([1e-3 * min(s / 4, (100 - s) / 96) for s in range(10)])
    assert rates[10] == pytest.approx(1e-3 * 20 / 26) and rates[-1] == pytest.approx(1e-3 * 1 / 26)
    assert all(a > b for a, b in itertools.pairwise(rates[10:]))
    assert scheduler.get_last_lr() == [0.0]


def test_steps_per_epoch_counts_batches_per_language_group():
    languages = ["de"] * 33 + ["fr"] * 2 + [None]
    assert steps_per_epoch(languages, 16, one_language_per_batch=False) == 3
    assert steps_per_epoch(languages, 16, one_language_per_batch=True) == 3 + 1 + 1
