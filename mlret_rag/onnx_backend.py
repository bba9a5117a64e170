"""ONNX Runtime inference for sentence-transformers folders (Transformer + mean Pooling [+ Normalize]).

The transformer is exported once from PyTorch (eager attention, opset 17, dynamic batch and sequence
axes), fused by onnxruntime's BERT optimiser and saved as ``<model folder>/onnx/model.onnx``; the int8
variant ``model_int8.onnx`` is SmoothQuant-balanced and dynamically quantised from it
(:mod:`.onnx_quantize`) with the frozen calibration set :func:`calibration_path`. Files are built by
:func:`~mlret_rag.cache.build_once` (temporary name, rename, file lock); a manifest records their size,
mtime and sha256, the weights they came from and, for int8, the calibration set's sha256, so a damaged
or stale file is rebuilt. Encoding reproduces sentence-transformers: the folder's tokenizer,
prompt prepended to the text, truncation to ``max_seq_length``, mean pooling over the attention mask,
L2 normalisation, float32.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import write_bytes_atomic
from ._hashing import sha256_file
from .cache import build_once, cache_dir
from .errors import OnnxBackendError

logger = logging.getLogger(__name__)

BACKEND_FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
ONNX_SUBDIR = "onnx"
MANIFEST = "manifest.json"
CALIBRATION_FILE = "int8_calibration.jsonl"
OPSET = 17
# Bump a file's version when its recipe changes, so old files are rebuilt (int8 3: SmoothQuant, per-channel).
_EXPORT_VERSIONS = {BACKEND_FILES["onnx"]: 2, BACKEND_FILES["onnx-int8"]: 3}
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
# An int8 file whose vectors fall below this cosine to fp32 on the calibration texts gets a warning
# (measured: 0.9997 for the bundled model, whose MRR then stays >= 99.6 % of fp32 on every group).
INT8_WARN_BELOW_COSINE = 0.995


# -------------------------------------------------------------------------------------------------
# Reading the sentence-transformers folder without loading PyTorch


def read_folder_config(folder: Path) -> dict[str, Any]:
    """Prompts, token window, dimension and pad id of a Transformer+Pooling(mean)+Normalize folder.

    Raises:
        OnnxBackendError: the folder has other modules, another pooling mode, or no ``tokenizer.json``.
    """
    folder = Path(folder)
    hint = 'use backend="torch" for this model'
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError) as exc:
        raise OnnxBackendError(f"{folder}/modules.json is missing or unreadable ({exc}); {hint}") from exc
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in _SUPPORTED_MODULES for k in kinds) or (
        len(kinds) > 2 and kinds[2:] != ["Normalize"]
    ):
        raise OnnxBackendError(
            f"the ONNX backend supports Transformer + Pooling(mean) [+ Normalize] models; {folder} has "
            f"{' + '.join(kinds) or 'no modules'}; {hint}"
        )
    if modules[0].get("path", "") != "":
        raise OnnxBackendError(f"{folder}: the Transformer module is not at the folder root; {hint}")
    pooling = _read_json(folder / modules[1]["path"] / "config.json")
    mode = pooling.get("pooling_mode")
    if mode is None:  # sentence-transformers < 6 wrote one boolean per mode
        on = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True]
        mode = "mean" if on == ["pooling_mode_mean_tokens"] else ",".join(on) or "none"
    if mode != "mean" or pooling.get("include_prompt", True) is not True:
        raise OnnxBackendError(
            f"{folder}: pooling is {mode!r} (include_prompt={pooling.get('include_prompt', True)}); the ONNX "
            f"backend supports mean pooling over all tokens only; {hint}"
        )
    if not (folder / "tokenizer.json").is_file():
        raise OnnxBackendError(f"{folder} has no tokenizer.json (a fast tokenizer is needed); {hint}")
    st_config = _read_json(folder / "config_sentence_transformers.json")
    bert_config = _read_json(folder / "sentence_bert_config.json")
    tok_config = _read_json(folder / "tokenizer_config.json")
    hf_config = _read_json(folder / "config.json")
    # sentence-transformers reads the window from the tokenizer (set from sentence_bert_config if given).
    window = bert_config.get("max_seq_length") or tok_config.get("model_max_length")
    max_pos = hf_config.get("max_position_embeddings")
    if not isinstance(window, int) or window > 1_000_000:
        window = max_pos
    if not isinstance(window, int):
        raise OnnxBackendError(f"{folder}: cannot tell the model's token window; {hint}")
    dimension = pooling.get("embedding_dimension") or pooling.get("word_embedding_dimension")
    return {
        "prompts": dict(st_config.get("prompts") or {}),
        "max_seq_length": int(window),
        "dimension": int(dimension or hf_config.get("hidden_size")),
        "pad_token": tok_config.get("pad_token"),
        "pad_token_id": hf_config.get("pad_token_id"),
        "num_heads": int(hf_config.get("num_attention_heads", 0)),
        "hidden_size": int(hf_config.get("hidden_size", 0)),
        "model_type": hf_config.get("model_type"),
    }


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OnnxBackendError(f"{path} is unreadable: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("pad_token"), dict):  # AddedToken form
        data["pad_token"] = data["pad_token"].get("content")
    return data if isinstance(data, dict) else {}


# -------------------------------------------------------------------------------------------------
# Export, optimisation, quantisation: once per model folder, atomically


def onnx_dir_for(folder: Path, source_digest: str) -> Path:
    """Where a folder's ONNX files live: ``<folder>/onnx``, or the cache when the folder is read-only or a
    Hugging Face hub snapshot (whose own ``onnx/`` files must not be replaced)."""
    local = Path(folder) / ONNX_SUBDIR
    writable = os.access(folder, os.W_OK) and (not local.exists() or os.access(local, os.W_OK))
    if writable and not _in_hub_cache(Path(folder)):
        return local
    return cache_dir() / "onnx" / source_digest[:16]


def _in_hub_cache(folder: Path) -> bool:
    from huggingface_hub import constants

    try:
        return Path(folder).resolve().is_relative_to(Path(constants.HF_HUB_CACHE).resolve())
    except (OSError, AttributeError):
        return False


def ensure_onnx_model(folder: Path, backend: str, source_digest: str) -> Path:
    """Return the path of ``backend``'s ONNX file for ``folder``, exporting it first when missing or damaged."""
    if backend not in BACKEND_FILES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_FILES)}, got {backend!r}")
    out_dir = onnx_dir_for(folder, source_digest)
    fp32 = _build_file(out_dir, BACKEND_FILES["onnx"], source_digest,
                       lambda: (_export_fp32(folder).SerializeToString(), {}))
    if backend == "onnx":
        return fp32
    return _build_file(out_dir, BACKEND_FILES["onnx-int8"], source_digest, lambda: _build_int8(folder, fp32),
                       calibration_sha256=calibration_sha256())


def _build_file(out_dir: Path, name: str, source_digest: str, make: Callable[[], tuple[bytes, dict]],
                **expected: Any) -> Path:
    """Build ``out_dir/name`` once from ``make()`` (the file's bytes and extra manifest fields).

    ``expected`` are manifest fields an existing file must carry to be reused (the calibration set's hash).
    One lock per folder: the int8 file is built from the fp32 one, and both share the manifest.
    """
    extra: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        started = time.perf_counter()
        data, fields = make()
        (tmp / name).write_bytes(data)
        extra.update(expected, **fields, seconds=round(time.perf_counter() - started, 1))

    return build_once(
        out_dir / name, build, lock=out_dir / ".export.lock",
        is_valid=lambda _: _is_valid(out_dir, name, source_digest, **expected),
        record=lambda _: _record(out_dir, name, source_digest, **extra),
    )


def _build_int8(folder: Path, fp32: Path) -> tuple[bytes, dict[str, Any]]:
    """The int8 file's bytes, and its fidelity to fp32 on the calibration set (warned when low)."""
    feeds = list(calibration_feeds(folder))
    int8 = _quantize_int8(fp32, feeds)
    fidelity = _min_cosine(fp32, int8, feeds)
    if fidelity < INT8_WARN_BELOW_COSINE:
        logger.warning(
            "int8 vectors of %s differ from fp32 (cosine %.4f < %s on the calibration texts); check "
            "retrieval with `mlret eval --backend onnx-int8` against `--backend onnx` before relying on "
            "it.", folder, fidelity, INT8_WARN_BELOW_COSINE,
        )
    return int8, {"calibration_min_cosine": round(fidelity, 5)}


def invalidate(onnx_file: Path) -> None:
    """Forget a file's manifest entry so the next :func:`ensure_onnx_model` rebuilds it."""
    manifest = read_manifest(onnx_file.parent)
    if manifest.get("files", {}).pop(onnx_file.name, None) is not None:
        write_bytes_atomic(onnx_file.parent / MANIFEST, json.dumps(manifest, indent=2).encode())


def _export_fp32(folder: Path) -> Any:
    """Export the transformer with eager attention and fuse it with onnxruntime's BERT optimiser."""
    import onnx
    import torch
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    from ._quiet import quiet_transformers

    cfg = read_folder_config(folder)
    try:
        with quiet_transformers():
            model = AutoModel.from_pretrained(
                str(folder), attn_implementation="eager", use_safetensors=True, trust_remote_code=False
            ).eval()
    except Exception as exc:
        raise OnnxBackendError(f"cannot load {folder} for ONNX export ({exc}); use backend=\"torch\"") from exc

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.tensor([[0, 100, 200, 2], [0, 300, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    axes = {0: "batch", 1: "sequence"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LastHiddenState(model), (ids, mask), buffer, input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"], opset_version=OPSET, dynamo=False,
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            )
    except Exception as exc:
        raise OnnxBackendError(f"ONNX export of {folder} failed ({exc}); use backend=\"torch\"") from exc
    del model
    raw = onnx.load_from_string(buffer.getvalue())
    del buffer
    fused = optimizer.optimize_model(
        raw, model_type="bert", num_heads=cfg["num_heads"], hidden_size=cfg["hidden_size"], opt_level=0
    )
    stats = fused.get_fused_operator_statistics()
    if not stats.get("Attention"):
        logger.warning("onnxruntime fused no attention in %s; the ONNX model will be slower.", folder)
    fused.topological_sort()
    _declare_ms_domain(fused.model)
    return fused.model


def _declare_ms_domain(model: Any) -> None:
    """Fused nodes live in the ``com.microsoft`` domain, which must be imported for shape inference."""
    if any(n.domain == "com.microsoft" for n in model.graph.node) and not any(
        o.domain == "com.microsoft" for o in model.opset_import
    ):
        opset = model.opset_import.add()
        opset.domain, opset.version = "com.microsoft", 1


def _quantize_int8(fp32: Path, feeds: list[dict[str, np.ndarray]]) -> bytes:
    """SmoothQuant-balanced dynamic int8 (see :mod:`.onnx_quantize`), calibrated on ``feeds``."""
    import onnx

    from .onnx_quantize import quantize_int8

    model = onnx.load(str(fp32))
    _declare_ms_domain(model)
    return quantize_int8(model, feeds)


def _min_cosine(fp32: Path, int8: bytes, feeds: list[dict[str, np.ndarray]]) -> float:
    """Lowest cosine between the fp32 and int8 mean-pooled vectors of the calibration texts."""
    sessions = [_session(fp32), _session(int8)]
    worst = 1.0
    for feed in feeds:
        a, b = (s.run(None, feed)[0][0].mean(axis=0) for s in sessions)
        worst = min(worst, float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return worst


def calibration_path() -> Path:
    """The int8 calibration set: 159 multilingual support texts frozen for the int8 recipe (KB records
    whose ``metadata.side`` says which prompt they take). Its sha256 is in the manifest, so editing it
    rebuilds the int8 files; it is a copy of the demo data as of int8 recipe 3, and stays put when the
    demo changes."""
    return Path(str(resources.files("mlret_rag") / "data" / CALIBRATION_FILE))


def calibration_sha256() -> str:
    """sha256 of :func:`calibration_path`, recorded with each int8 file."""
    return sha256_file(calibration_path())


def calibration_feeds(folder: Path) -> Iterator[dict[str, np.ndarray]]:
    """The calibration texts tokenised for ``folder``'s model, one text per run, its side's prompt applied."""
    from tokenizers import Tokenizer

    from .kb import load_kb

    cfg = read_folder_config(folder)
    tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=cfg["max_seq_length"])
    for record in load_kb(calibration_path()):
        ids = tokenizer.encode(cfg["prompts"].get(record.metadata["side"], "") + record.text).ids
        yield {"input_ids": np.array([ids], dtype=np.int64),
               "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}


def read_manifest(out_dir: Path) -> dict:
    """The manifest of an ONNX folder (``{"files": {name: {size, sha256, source_digest, ...}}}``), or ``{}``."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        return manifest if isinstance(manifest, dict) else {}
    except (OSError, ValueError):
        return {}


def _record(out_dir: Path, name: str, source_digest: str, *, seconds: float, **extra: Any) -> None:
    import onnxruntime
    import torch

    path = out_dir / name
    stat = path.stat()
    manifest = read_manifest(out_dir)
    files = manifest.setdefault("files", {})
    files[name] = {
        "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path),
        "source_digest": source_digest, "export_version": _EXPORT_VERSIONS[name], "opset": OPSET,
        "seconds": seconds, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        **extra,
    }
    write_bytes_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2).encode())


def _is_valid(out_dir: Path, name: str, source_digest: str, **expected: Any) -> bool:
    """Size must match; a changed mtime (a copy, an overwrite) costs a sha256 check."""
    entry = read_manifest(out_dir).get("files", {}).get(name)
    path = out_dir / name
    try:
        if not entry or entry["source_digest"] != source_digest or entry["export_version"] != _EXPORT_VERSIONS[name]:
            return False
        if any(entry.get(key) != value for key, value in expected.items()):
            return False
        stat = path.stat()
        if stat.st_size != entry["size"]:
            return False
        return stat.st_mtime_ns == entry["mtime_ns"] or sha256_file(path) == entry["sha256"]
    except (OSError, KeyError, TypeError):
        return False


# -------------------------------------------------------------------------------------------------
# Inference


class OnnxEngine:
    """Tokenise, run the ONNX transformer, mean-pool and L2-normalise, the way sentence-transformers does.

    One of the engines of :mod:`mlret_rag.engines` (``backend`` "onnx" or "onnx-int8").
    """

    def __init__(self, folder: Path, backend: str, source_digest: str, max_seq_length: int | None = None) -> None:
        self.config = read_folder_config(folder)
        self.backend = backend
        self.max_seq_length = int(max_seq_length or self.config["max_seq_length"])
        self.dimension = int(self.config["dimension"])
        self.prompts = dict(self.config["prompts"])
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad = self.config["pad_token"]
        pad_id = self._tokenizer.token_to_id(pad) if isinstance(pad, str) else None
        self._pad_id = int(pad_id if pad_id is not None else (self.config["pad_token_id"] or 0))
        self.path = ensure_onnx_model(folder, backend, source_digest)
        try:
            self._session = _session(self.path)
        except Exception as exc:  # noqa: BLE001 - a file that passed the manifest but fails to load
            logger.warning("ONNX file %s failed to load (%s); rebuilding it.", self.path, exc)
            invalidate(self.path)
            if backend == "onnx-int8":
                invalidate(self.path.with_name(BACKEND_FILES["onnx"]))
            self.path = ensure_onnx_model(folder, backend, source_digest)
            self._session = _session(self.path)

    @property
    def files(self) -> tuple[Path, ...]:
        """The ONNX file this engine runs."""
        return (self.path,)

    @property
    def manifest(self) -> dict:
        """The manifest of the folder holding the ONNX files (sizes, hashes, source, calibration)."""
        return read_manifest(self.path.parent)

    def encode(self, texts: Sequence[str], prompt: str, batch_size: int, show_progress_bar: bool = False) -> np.ndarray:
        """Encode already-validated texts into an (n, dim) float32 array of unit vectors."""
        encodings = self._tokenizer.encode_batch([prompt + t for t in texts])
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches", unit="batch")
        for start in starts:
            index = order[start : start + batch_size]
            batch = [encodings[i].ids for i in index]
            width = max(len(ids) for ids in batch)
            ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            (hidden,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[index] = pooled / np.clip(norms, 1e-12, None)
        return out


def _session(model: Path | bytes) -> Any:
    """A CPU session for an ONNX file or serialized model, all graph optimisations on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
