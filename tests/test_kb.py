"""Knowledge-base and query loading: every source kind, stable derived ids, one clear error per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlret_rag.errors import KnowledgeBaseError
from mlret_rag.kb import KBRecord, QueryRecord, load_kb, load_queries


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def test_jsonl_loads_records_and_skips_blank_lines(tmp_path):
    path = write_lines(tmp_path / "kb.jsonl", [
        {"id": "a", "text": "Reset your password", "label": "pw", "lang": "en", "metadata": {"n": 1, "ok": True}},
        "",
        {"text": "Où est mon colis ?", "lang": "fr"},
    ])
    recs = load_kb(path)
    assert recs[0] == KBRecord(id="a", text="Reset your password", label="pw", lang="en",
                               metadata={"n": 1, "ok": True})
    assert recs[1].text == "Où est mon colis ?" and recs[1].id.startswith("kb-") and recs[1].label is None


def test_derived_ids_are_stable_and_depend_on_content(tmp_path):
    rows = [{"text": "same text", "label": "a"}, {"text": "same text", "label": "b"}]
    first = load_kb(write_lines(tmp_path / "kb.jsonl", rows))
    again = load_kb(rows)
    assert [r.id for r in first] == [r.id for r in again]
    assert first[0].id != first[1].id


def test_csv_extra_columns_become_metadata(tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text('id,text,label,lang,category\nr1,"Hello, world",greet,en,misc\nr2,Bye,,,\n', encoding="utf-8")
    recs = load_kb(path)
    assert recs[0] == KBRecord(id="r1", text="Hello, world", label="greet", lang="en", metadata={"category": "misc"})
    assert recs[1] == KBRecord(id="r2", text="Bye")


def test_dataset_with_class_labels_loads_label_names():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {"text": ["hi", "bye"], "label": [0, 1]},
        features=datasets.Features({"text": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["hello", "goodbye"])}),
    )
    assert [r.label for r in load_kb(ds)] == ["hello", "goodbye"]


def test_queries_from_jsonl_and_csv(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [
        {"text": "Wo ist mein Paket?", "label": "track", "lang": "de"},
        {"text": "refund?", "relevant_ids": ["r1", "r2"], "source_id": "r1"},
    ])
    assert load_queries(path) == [
        QueryRecord(text="Wo ist mein Paket?", label="track", lang="de"),
        QueryRecord(text="refund?", relevant_ids=("r1", "r2"), source_id="r1"),
    ]
    csv_path = tmp_path / "q.csv"
    csv_path.write_text("text,lang,relevant_ids\n¿Dónde?,es,r1|r2\n", encoding="utf-8")
    assert load_queries(csv_path) == [QueryRecord(text="¿Dónde?", lang="es", relevant_ids=("r1", "r2"))]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"text": "ok"}', '{"text": "broken"'], ":2: malformed JSON"),
        (['{"label": "x"}'], ':1: missing "text"'),
        (['{"text": "   "}'], ':1: "text" is empty'),
        (['{"text": 42}'], ':1: "text" must be a string, got a number'),
        (['{"text": "a", "label": 3}'], ':1: "label" must be a non-empty string'),
        (['{"text": "a", "id": 7}'], ':1: "id" must be a non-empty string'),
        (['{"text": "a", "metadata": {"tags": ["x"]}}'], ":1: metadata value for 'tags' must be a string, number"),
        (['{"text": "a", "metadata": {"k": null}}'], ":1: metadata value for 'k' must be a string, number"),
        (['{"text": "a", "metadata": "x"}'], ':1: "metadata" must be an object'),
        (['{"text": "a", "metadata": {"label": "x"}}'], ":1: metadata key 'label' is reserved"),
        (['{"text": "a", "title": "x"}'], ":1: unknown field 'title'"),
        (['["a"]'], ":1: expected a JSON object, got a list"),
        (['{"id": "x", "text": "a"}', '', '{"id": "x", "text": "b"}'], ":3: duplicate id 'x' (first seen at "),
        (['{"text": "same"}', '{"text": "same"}'], ":2: duplicate id 'kb-"),
    ],
)
def test_bad_kb_lines_name_file_line_and_problem(tmp_path, lines, expected):
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError) as err:
        load_kb(path)
    assert str(err.value).startswith(str(path) + ":")
    assert expected in str(err.value)


def test_duplicate_error_names_the_first_line(tmp_path):
    path = write_lines(tmp_path / "kb.jsonl", [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    with pytest.raises(KnowledgeBaseError, match=r"kb\.jsonl:2: duplicate id 'x' \(first seen at .*kb\.jsonl:1\)"):
        load_kb(path)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(KnowledgeBaseError, match=r"kb\.jsonl:2: not valid UTF-8"):
        load_kb(path)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "hello"}\n')
    assert load_kb(path)[0].text == "hello"


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "kb.jsonl"
    path.write_text(content)
    with pytest.raises(KnowledgeBaseError, match="no records"):
        load_kb(path)


def test_csv_problems_name_the_line(tmp_path):
    no_text = tmp_path / "a.csv"
    no_text.write_text("id,body\n1,x\n")
    with pytest.raises(KnowledgeBaseError, match=r"a\.csv:1: the CSV header has no \"text\" column"):
        load_kb(no_text)
    short = tmp_path / "b.csv"
    short.write_text("id,text,label\n1,hello,x\n2,bye\n")
    with pytest.raises(KnowledgeBaseError, match=r"b\.csv:3: expected 3 columns, got 2"):
        load_kb(short)
    empty_text = tmp_path / "c.csv"
    empty_text.write_text("id,text\n1,hello\n2,\n")
    with pytest.raises(KnowledgeBaseError, match=r'c\.csv:3: "text" is empty'):
        load_kb(empty_text)


def test_bad_query_lines(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [{"text": "ok"}, {"text": "x", "relevant_ids": "r1"}])
    with pytest.raises(KnowledgeBaseError, match=r'q\.jsonl:2: "relevant_ids" must be a list of strings'):
        load_queries(path)
    path = write_lines(tmp_path / "q2.jsonl", [{"text": "x", "metadata": {}}])
    with pytest.raises(KnowledgeBaseError, match=r"q2\.jsonl:1: unknown field 'metadata'"):
        load_queries(path)


def test_iterable_rows_are_numbered_from_one():
    with pytest.raises(KnowledgeBaseError, match=r"<dataset>:2: missing \"text\""):
        load_kb([{"text": "a"}, {"label": "b"}])


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_kb(tmp_path / "nope.jsonl")
    other = tmp_path / "kb.txt"
    other.write_text("hello")
    with pytest.raises(KnowledgeBaseError, match=r"kb\.txt: unsupported file type"):
        load_kb(other)
