"""The public names of langchain_mlret are exactly these."""

from langchain_mlret import __all__

EXPECTED_ALL = ["MLRetEmbeddings", "MLRetRetriever"]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(__all__)
