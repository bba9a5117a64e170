"""load_documents: real files written here, chunked in the bundled encoder's tokens, named on failure."""

from __future__ import annotations

import itertools
import os
import sys

import pytest
from support import pdf_bytes

from mlret_rag import load_documents
from mlret_rag.documents import DocumentError, token_counter

GUIDE = """\
---
title: Returns guide
---
# Returns

You can return most items within 30 days of delivery.

## Refunds

Refunds are paid back to your card within 14 days. If it takes longer, contact support.

## Labels
### Printing

Print the free return label from your account page and stick it on the parcel.

```
# a comment in code, not a heading
```
"""

SHIPPING = (
    "<html><head><title>Shipping &amp; delivery</title><style>p {color: red}</style></head><body>"
    "<nav>Home</nav><h1>Shipping</h1><p>Parcels arrive in <b>3 to 5</b> working days.</p>"
    "<h2>Tracking</h2><ul><li>Open My orders.</li><li>Click Track parcel.</li></ul>"
    "<script>var tracking = 1;</script></body></html>"
)


@pytest.fixture(scope="module")
def count():
    """The bundled encoder's token counter (its tokenizer file only)."""
    return token_counter()[0]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "docs"
    (root / "help").mkdir(parents=True)
    (root / "guide.md").write_text(GUIDE, encoding="utf-8")
    (root / "help" / "shipping.html").write_text(SHIPPING, encoding="utf-8")
    (root / "notes.txt").write_text("Opening hours are nine to five, Monday to Friday.\n", encoding="utf-8")
    (root / "manual.pdf").write_bytes(pdf_bytes(["Warranty\nThe warranty lasts two years.", None,
                                                 "Repairs are free during the warranty."]))
    (root / "image.png").write_bytes(b"\x89PNG\r\n")  # not a document type: ignored
    (root / ".hidden.md").write_text("# secret", encoding="utf-8")
    return root


def by_id(loaded):
    return {r.id: r for r in loaded.records}


def test_folder_loads_every_type_with_source_metadata(folder):
    loaded = load_documents(folder)
    assert loaded.documents == ["guide.md", "help/shipping.html", "manual.pdf", "notes.txt"]
    assert loaded.skipped == []
    recs = by_id(loaded)
    guide_text = (folder / "guide.md").read_text(encoding="utf-8")
    for rec in loaded.records:
        doc_id = rec.id.rsplit("#", 1)[0]
        assert rec.metadata["doc_id"] == rec.metadata["source"] == doc_id
        assert rec.id == f"{doc_id}#{rec.metadata['chunk']}"
        if doc_id == "guide.md":  # offsets point into the file itself
            assert guide_text[rec.metadata["start"]:rec.metadata["end"]] == rec.text
    guide = [r for r in loaded.records if r.metadata["doc_id"] == "guide.md"]
    assert {r.metadata["title"] for r in guide} == {"Returns guide"}  # from the front matter
    assert [r.metadata["headings"] for r in guide] == ["Returns", "Returns > Refunds", "Returns > Labels > Printing"]
    assert "a comment in code" in guide[2].text and "title:" not in guide[0].text
    ship = [r for r in loaded.records if r.metadata["doc_id"] == "help/shipping.html"]
    assert ship[0].metadata["title"] == "Shipping & delivery"
    assert [r.metadata["headings"] for r in ship] == ["Shipping", "Shipping > Tracking"]
    assert "var tracking" not in " ".join(r.text for r in ship) and "color" not in " ".join(r.text for r in ship)
    assert "3 to 5 working days" in ship[0].text and "Home" not in ship[0].text  # <nav> is page chrome
    assert recs["notes.txt#0"].metadata["title"] == "notes.txt" and recs["notes.txt#0"].metadata["headings"] == ""
    pdf = [r for r in loaded.records if r.metadata["doc_id"] == "manual.pdf"]
    assert "two years" in pdf[0].text and pdf[0].metadata["page"] == 1
    assert any("page 2: no text" in n and "manual.pdf" in n for n in loaded.notes)


def test_markdown_title_falls_back_to_first_heading_then_file_name(tmp_path):
    (tmp_path / "a.md").write_text("Some preamble.\n\n# First heading\n\nBody.\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("No headings at all.\n", encoding="utf-8")
    recs = by_id(load_documents(tmp_path))
    assert recs["a.md#0"].metadata["title"] == "First heading" and recs["a.md#0"].metadata["headings"] == ""
    assert recs["a.md#1"].metadata["headings"] == "First heading"
    assert recs["b.md#0"].metadata["title"] == "b.md"


@pytest.mark.parametrize("chunk_tokens", [32, 64, 200])
def test_chunks_fit_the_token_budget_and_end_on_sentences(tmp_path, count, chunk_tokens):
    sentences = [f"Sentence {i} explains how setting {i} changes the invoice." for i in range(150)]
    (tmp_path / "long.txt").write_text(" ".join(sentences), encoding="utf-8")
    overlap = chunk_tokens // 4
    loaded = load_documents(tmp_path, chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    tokens = [count(r.text) for r in loaded.records]
    assert max(tokens) <= chunk_tokens
    assert len(loaded.records) >= sum(count(s) for s in sentences) // chunk_tokens
    for rec in loaded.records:
        assert rec.text.startswith("Sentence ") and rec.text.endswith("invoice.")
    starts = [r.metadata["start"] for r in loaded.records]
    ends = [r.metadata["end"] for r in loaded.records]
    assert starts == sorted(starts) and ends == sorted(ends)
    # The overlap is whole sentences: it happens when one fits in overlap_tokens, and never exceeds it.
    shared = [ends[i] - starts[i + 1] for i in range(len(starts) - 1)]
    if overlap >= max(count(s) for s in sentences):
        assert all(n > 0 for n in shared)
    else:
        assert all(n < 0 for n in shared)  # chunks tile the text, separated by one space


def test_no_overlap_tiles_the_text(tmp_path):
    text = " ".join(f"Line {i} is about refunds and parcels." for i in range(80))
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    loaded = load_documents(tmp_path, chunk_tokens=40, overlap_tokens=0)
    spans = [(r.metadata["start"], r.metadata["end"]) for r in loaded.records]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert " ".join(r.text for r in loaded.records) == text


def test_chinese_japanese_and_thai_chunk_on_sentences(tmp_path, count):
    zh = "".join(f"第{i}个包裹会在三到五个工作日内送达您的地址。" for i in range(60))
    ja = "".join(f"注文{i}の返金は十四日以内にカードへ返金されます！" for i in range(60))
    th_phrases = ["พัสดุจะถึงภายในสามถึงห้าวันทำการ", "คืนเงินภายในสิบสี่วัน", "ติดต่อฝ่ายบริการลูกค้า"]
    th = " ".join(th_phrases[i % 3] for i in range(120))  # Thai puts spaces between phrases, not words
    for name, text in (("zh.txt", zh), ("ja.txt", ja), ("th.txt", th)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    loaded = load_documents(tmp_path, chunk_tokens=64)
    for doc in ("zh.txt", "ja.txt", "th.txt"):
        chunks = [r for r in loaded.records if r.metadata["doc_id"] == doc]
        assert len(chunks) > 3 and max(count(r.text) for r in chunks) <= 64
        for rec in chunks:
            if doc == "zh.txt":
                assert rec.text.startswith("第") and rec.text.endswith("。")
            elif doc == "ja.txt":
                assert rec.text.startswith("注文") and rec.text.endswith("！")
            else:  # cut only at the spaces between phrases, never inside one
                assert set(rec.text.split(" ")) <= set(th_phrases)


def test_ids_are_stable_and_independent_of_other_files(folder):
    first = load_documents(folder)
    again = load_documents(folder)
    assert first.records == again.records
    (folder / "aaa.md").write_text("# New\n\nA new article.\n", encoding="utf-8")
    with_new = by_id(load_documents(folder))
    assert all(with_new[r.id] == r for r in first.records)
    single = load_documents(folder / "guide.md")
    assert [r.id for r in single.records] == ["guide.md#0", "guide.md#1", "guide.md#2"]


def test_include_and_exclude_globs(folder):
    only_md = load_documents(folder, include="*.md")
    assert only_md.documents == ["guide.md"]
    no_help = load_documents(folder, exclude=["help/*", "*.pdf"])
    assert no_help.documents == ["guide.md", "notes.txt"]
    html = load_documents(folder, include=["*.html"], exclude="guide.md")
    assert html.documents == ["help/shipping.html"]
    png = load_documents(folder, include="*.png")
    assert png.records == [] and "unsupported file type '.png'" in png.skipped[0].reason


def test_bad_files_are_named_and_the_rest_still_loads(tmp_path):
    (tmp_path / "good.md").write_text("# Good\n\nThis one indexes.\n", encoding="utf-8")
    (tmp_path / "empty.md").write_text("  \n\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "only-tags.html").write_text("<html><body><script>x()</script></body></html>", encoding="utf-8")
    (tmp_path / "gone.md").symlink_to(tmp_path / "missing-target.md")
    (tmp_path / "scanned.pdf").write_bytes(pdf_bytes([None, None]))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    with open(tmp_path / "locked.pdf", "wb") as fh:
        writer.write(fh)
    loaded = load_documents(tmp_path)
    assert loaded.documents == ["good.md"]
    reasons = {os.path.basename(s.path): s.reason for s in loaded.skipped}
    assert set(reasons) == {"empty.md", "latin1.txt", "only-tags.html", "gone.md", "scanned.pdf", "broken.pdf",
                            "locked.pdf"}
    assert reasons["empty.md"] == "empty document (no text)" == reasons["only-tags.html"]
    assert "not valid UTF-8" in reasons["latin1.txt"] and "at byte 3" in reasons["latin1.txt"]
    assert "cannot read" in reasons["gone.md"]
    assert "no text on any of its 2 page(s)" in reasons["scanned.pdf"] and "OCR" in reasons["scanned.pdf"]
    assert "not a readable PDF" in reasons["broken.pdf"]
    assert "encrypted PDF" in reasons["locked.pdf"]
    assert str(loaded.skipped[0]).startswith(str(tmp_path))  # str() is "path: reason"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "ok.txt").write_text("Readable.", encoding="utf-8")
    locked = tmp_path / "locked.txt"
    locked.write_text("Secret.", encoding="utf-8")
    locked.chmod(0)
    loaded = load_documents(tmp_path)
    assert loaded.documents == ["ok.txt"] and "Permission denied" in loaded.skipped[0].reason


def test_pdf_without_the_extra_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "a.pdf").write_bytes(pdf_bytes(["Some text."]))
    (tmp_path / "b.txt").write_text("Plain text still loads.", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "pypdf", None)  # what an install without mlret-rag[pdf] sees
    loaded = load_documents(tmp_path)
    assert loaded.documents == ["b.txt"]
    assert loaded.skipped[0].reason == "PDF files need the optional extra: pip install 'mlret-rag[pdf]'"


def test_arguments_are_checked(tmp_path):
    (tmp_path / "a.txt").write_text("Text.", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_documents(tmp_path / "nowhere")
    with pytest.raises(DocumentError, match=r"chunk_tokens must be an integer in 8\.\.500 .*got 600"):
        load_documents(tmp_path, chunk_tokens=600)
    with pytest.raises(DocumentError, match="overlap_tokens must be an integer in 0..31"):
        load_documents(tmp_path, chunk_tokens=64, overlap_tokens=32)
    with pytest.raises(DocumentError, match="include must be glob strings"):
        load_documents(tmp_path, include=[""])


def test_a_callable_token_counter_sizes_chunks(tmp_path):
    (tmp_path / "w.txt").write_text(" ".join(f"word{i}." for i in range(100)), encoding="utf-8")
    loaded = load_documents(tmp_path, tokenizer=lambda text: len(text.split()), chunk_tokens=10, overlap_tokens=0)
    assert [len(r.text.split()) for r in loaded.records] == [10] * 10
