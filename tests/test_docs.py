"""The protocol document says what the models say."""

from __future__ import annotations

from smartcity import docgen


def test_protocol_tables_match_the_models() -> None:
    text = docgen.DOC.read_text()
    assert docgen.render(text) == text, "run: python -m smartcity.docgen"
