"""Helpers several test modules share (test modules never import each other)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
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


def kill_after_progress(proc: subprocess.Popen, pattern: bytes, at_least: int, timeout: float = 150) -> str:
    """SIGKILL ``proc`` once its stderr shows a tqdm count (``pattern``'s group) of at least ``at_least``.

    tqdm counts a batch once it is committed, so the kill lands after that many committed batches.
    Returns the stderr seen (for assertion messages); the process is always reaped.
    """
    seen = bytearray()

    def read() -> None:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [int(m) for m in re.findall(pattern, bytes(seen))]
            if done and max(done) >= at_least:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(5)
    return bytes(seen).decode(errors="replace")[-2000:]
