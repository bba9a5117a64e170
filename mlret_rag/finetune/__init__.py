"""Fine-tuning a multilingual encoder on one knowledge base with weighted negative sampling (METHOD.md).

One concept per module: :mod:`.split` (index/training split), :mod:`.label_similarity`,
:mod:`.negatives` (standard / weighted / hard), :mod:`.examples` (anchor, positive, negatives),
:mod:`.epochs` (examples redrawn per epoch), :mod:`.dev` (dev split, selection, language guard),
:mod:`.memory` (peak-memory check), :mod:`.pseudo_labels` (self-training on unlabelled questions),
:mod:`.augment` (code-switched and noisy anchor copies), :mod:`.sampler` (batches), :mod:`.loss` (label-masked InfoNCE), :mod:`.translate` (translator hook),
:mod:`.card` (model card), :mod:`.config` (:class:`FinetuneConfig`, every option) and :mod:`.train` (:func:`finetune`). Heavy libraries load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._callable import make_callable

_EXPORTS = {
    "finetune": ".train", "FinetuneResult": ".train", "OutputExistsError": ".train",
    "FinetuneConfig": ".config",
    "split_kb": ".split", "KBSplit": ".split",
    "NegativeSampler": ".negatives", "label_probabilities": ".negatives", "mine_hard_negatives": ".negatives",
    "STRATEGIES": ".negatives",
    "centroid_similarity": ".label_similarity", "label_similarity": ".label_similarity",
    "confusion_similarity": ".label_similarity", "anchor_similarity": ".label_similarity",
    "SIMILARITIES": ".label_similarity",
    "augmented_anchors": ".augment",
    "Anchor": ".examples", "Example": ".examples", "build_examples": ".examples",
    "prepare_training_data": ".data", "TrainingData": ".data", "EpochExamples": ".epochs",
    "split_dev": ".dev", "DevSplit": ".dev", "dev_score": ".dev", "language_guard": ".dev",
    "TrainingMemoryError": ".memory", "estimate_peak_gb": ".memory",
    "PseudoLabeller": ".pseudo_labels", "Voters": ".pseudo_labels", "agreed_margins": ".pseudo_labels",
    "choose_threshold": ".pseudo_labels", "estimated_precision": ".pseudo_labels",
    "precision_lower_bound": ".pseudo_labels",
    "target_margins": ".pseudo_labels", "unlabelled_questions": ".pseudo_labels",
    "propagated_targets": ".pseudo_labels",
    "calibration_languages": ".pseudo_labels", "calibration_plan": ".pseudo_labels",
    "LanguageBatchSampler": ".sampler", "language_batch_sampler": ".sampler",
    "LabelMaskedMNRLoss": ".loss", "masked_infonce_loss": ".loss",
    "Translator": ".translate", "chat_model_translator": ".translate",
    "read_card": ".card", "CARD_FILE": ".card",
}
__all__ = [
    "CARD_FILE",
    "SIMILARITIES",
    "STRATEGIES",
    "Anchor",
    "DevSplit",
    "EpochExamples",
    "Example",
    "FinetuneConfig",
    "FinetuneResult",
    "KBSplit",
    "LabelMaskedMNRLoss",
    "LanguageBatchSampler",
    "NegativeSampler",
    "OutputExistsError",
    "PseudoLabeller",
    "TrainingData",
    "TrainingMemoryError",
    "Translator",
    "Voters",
    "agreed_margins",
    "anchor_similarity",
    "augmented_anchors",
    "build_examples",
    "calibration_languages",
    "calibration_plan",
    "centroid_similarity",
    "chat_model_translator",
    "choose_threshold",
    "confusion_similarity",
    "dev_score",
    "estimate_peak_gb",
    "estimated_precision",
    "finetune",
    "label_probabilities",
    "label_similarity",
    "language_batch_sampler",
    "language_guard",
    "masked_infonce_loss",
    "mine_hard_negatives",
    "precision_lower_bound",
    "prepare_training_data",
    "propagated_targets",
    "read_card",
    "split_dev",
    "split_kb",
    "target_margins",
    "unlabelled_questions",
]

if TYPE_CHECKING:
    from .config import FinetuneConfig as FinetuneConfig
    from .train import FinetuneResult as FinetuneResult
    from .train import finetune as finetune


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


make_callable(__name__)  # `from mlret_rag import finetune` is the function even after this package was imported
