"""Helpers several test modules share (test modules never import each other)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Eight scripts: Latin, Cyrillic, Han, Japanese kana, Arabic, Devanagari, Greek, Hangul; one text
# longer than the 512-token window so truncation is compared too.
SENTENCES = [
    "How do I reset my password?",
    "Wie setze ich mein Passwort zurück?",
    "Как сбросить пароль?",
    "如何重置我的密码？",
    "パスワードをリセットするには？",
    "كيف أعيد تعيين كلمة المرور؟",
    "पासवर्ड कैसे रीसेट करें?",
    "Πώς επαναφέρω τον κωδικό μου;",
    "비밀번호를 재설정하려면 어떻게 해야 하나요?",
    "Kaip atkurti slaptažodį?",
    "Turn on the lights in the kitchen and set the thermostat to twenty degrees. " * 50,
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, dim) arrays."""
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def linked_copy(src: Path, dest: Path, with_onnx: bool) -> Path:
    """Copy a model folder, hard-linking the big read-only weights (never modified in place)."""
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if path.is_dir() or (rel.parts[0] == "onnx" and not with_onnx) or path.name.startswith("."):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".onnx":
            shutil.copyfile(path, target)  # new mtime: forces the sha256 check
        elif path.suffix == ".safetensors":
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        else:
            shutil.copy2(path, target)
    return dest


def replace_with(path: Path, data: bytes) -> None:
    """Replace a file by new content under a new inode (hard-linked originals stay untouched)."""
    tmp = path.with_name(path.name + ".damaged")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pdf_bytes(pages: list[str | None]) -> bytes:
    """A minimal valid PDF with one Helvetica text block per page (``None``: a page without text)."""
    objects = {1: "<< /Type /Catalog /Pages 2 0 R >>",
               3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"}
    kids = []
    for i, text in enumerate(pages):
        page, content = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page} 0 R")
        lines = (text or "").replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").split("\n")
        stream = "BT /F1 11 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET" \
            if text else "0 0 m 10 10 l S"
        objects[page] = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                         f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>")
        objects[content] = f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream"
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>"
    out, offsets = b"%PDF-1.4\n", []
    for num in sorted(objects):
        offsets.append(len(out))
        out += f"{num} 0 obj\n{objects[num]}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


class EncoderFailingAt:
    """The real encoder, except that its ``encode_documents`` call number ``fail_on`` raises ``error`` (an
    injected crash at a chosen batch; ``fail_on=None``: never). ``texts`` lists what each call was given."""

    def __init__(self, inner, fail_on: int | None = None, error: BaseException | None = None) -> None:
        self._inner, self._fail_on, self._error = inner, fail_on, error or RuntimeError("injected crash")
        self.texts: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode_documents(self, texts, *args, **kwargs):
        self.texts.append(list(texts))
        if len(self.texts) == self._fail_on:
            raise self._error
        return self._inner.encode_documents(texts, *args, **kwargs)

    @property
    def encoded(self) -> list[str]:
        """Every text given to the encoder, including the batch of the failing call."""
        return [t for call in self.texts for t in call]


def kill_when_committed(proc: subprocess.Popen, committed: Callable[[], int], *, at_least: int, total: int,
                        log: Path | None = None, deadline: float = 300.0, every: float = 0.02) -> int:
    """SIGKILL ``proc`` as soon as ``committed()`` (records this process reads from the database) is at least
    ``at_least`` and still below ``total``; returns that count.

    The kill follows what the database holds, not timing or progress text. ``deadline`` only bounds the test:
    passing it, ``proc`` finishing before the kill, or everything committed before a poll saw it fails the
    test (make the work longer). The process is always reaped; ``log`` (its output) is quoted on failure.
    """
    def output() -> str:
        return log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""

    end = time.monotonic() + deadline
    try:
        while True:
            done = committed()
            if done >= total:
                raise AssertionError(f"all {total} records were committed before a poll saw a partial state "
                                     f"(make the work longer):\n{output()}")
            if done >= at_least:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if proc.returncode != -signal.SIGKILL:  # it exited by itself between the poll and the kill
                    raise AssertionError(f"the process exited with {proc.returncode} before the kill:\n{output()}")
                return done
            if proc.poll() is not None:
                raise AssertionError(f"the process exited with {proc.returncode} after {done} of {total} records "
                                     f"were committed, before the kill:\n{output()}")
            if time.monotonic() > end:
                raise AssertionError(f"no {at_least} records committed within {deadline:.0f}s "
                                     f"({done} of {total}):\n{output()}")
            time.sleep(every)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def columns_and_labels(st) -> tuple:
    """Two anchors, their positives and one negative each, as loss columns, with the (2, 2) label ids."""
    query, document = st.prompts.get("query", ""), st.prompts.get("document", st.prompts.get("passage", ""))
    anchors = ["wie wird das Wetter morgen", "schalte das Licht in der Küche ein"]
    positives = ["what is the weather tomorrow", "turn on the kitchen lights"]
    negatives = ["set a timer for ten minutes", "what is the weather tomorrow"]

    def columns() -> list[dict]:
        return [st.preprocess(anchors, prompt=query)] + [st.preprocess(t, prompt=document) for t in (positives, negatives)]

    import torch

    return columns, torch.tensor([[0, 2], [1, 0]])


def loss_and_grads(st, compute) -> tuple[float, list]:
    """The loss ``compute()`` returns and every parameter's gradient from it (zeros where none)."""
    import torch

    st.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in st.parameters()]
    st.zero_grad(set_to_none=True)
    return loss.item(), grads


def largest_difference(a: list, b: list) -> float:
    """The largest absolute difference between two lists of same-shaped tensors."""
    return max((x - y).abs().max().item() for x, y in zip(a, b))
