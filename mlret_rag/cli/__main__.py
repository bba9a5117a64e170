"""``python -m mlret_rag.cli`` is the same as ``mlret``."""

from . import main

main()
