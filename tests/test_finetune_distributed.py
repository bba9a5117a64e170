"""``mlret finetune`` under ``torchrun`` with two CPU processes (gloo, data-parallel through the
sentence-transformers trainer): one loadable model whose dev score is within noise of one process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlret_rag import MultilingualEncoder, evaluate
from mlret_rag.demo import (
    demo_kb_path,
    demo_questions_path,
    demo_train_questions_path,
    load_demo_kb,
    load_demo_questions,
)
from mlret_rag.finetune import dev_score, read_card

pytestmark = pytest.mark.slow


def _finetune(out, processes: int) -> subprocess.CompletedProcess:
    args = ["finetune", "--kb", str(demo_kb_path()), "--queries", str(demo_train_questions_path()), "--dev",
            str(demo_questions_path()), "--out", str(out), "--epochs", "2", "--quiet"]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"OMP_NUM_THREADS": "1"} if processes > 1 else {})}
    return subprocess.run([sys.executable, *launcher, "-m", "mlret_rag.cli", *args], env=env, capture_output=True,
                          text=True, timeout=800, check=False)


def test_two_gloo_processes_train_one_model_within_noise_of_one(tmp_path):
    one = _finetune(tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _finetune(tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("fine-tuned on ") == 1  # rank 0 reports, the other rank only trains
    card = read_card(tmp_path / "two")
    assert card["selection"]["chosen_epoch"] >= 0 and card["training"]["steps"] >= 1
    kb, dev = load_demo_kb(), load_demo_questions()
    scores = {name: dev_score(evaluate(MultilingualEncoder(tmp_path / name, backend="torch"), kb, dev))
              for name in ("one", "two")}
    base = dev_score(evaluate(MultilingualEncoder(backend="torch"), kb, dev))
    assert abs(scores["two"] - scores["one"]) <= 0.05, scores  # 27 dev queries: a few ranks of noise
    assert scores["two"] >= base - 0.02, (scores, base)
