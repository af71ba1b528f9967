"""The glossary: one home for the definitions, and every page that uses a term offers its definition."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from explorer.state.glossary import GLOSSARY, MENTIONS, terms_mentioned

PAGES = sorted((Path(__file__).resolve().parents[1] / "explorer" / "pages").glob("[!_]*.py"))


def page_text(source: str) -> str:
    """Every string a page script holds (literals and the literal parts of f-strings): what it can show."""
    return "\n".join(
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def glossary_terms(source: str) -> list[str]:
    """The terms a page passes to its glossary(...) call(s)."""
    calls = [
        node for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glossary"
    ]  # fmt: skip
    return [arg.value for call in calls for arg in call.args if isinstance(arg, ast.Constant)]


def test_every_term_has_a_definition_and_a_way_to_spot_it():
    assert set(GLOSSARY) == set(MENTIONS)
    assert all(len(definition) > 80 for definition in GLOSSARY.values())
    # Markdown would read underscores as emphasis and dollar signs as LaTeX
    assert not [term for term, definition in GLOSSARY.items() if "_" in definition or "$" in definition]


def test_terms_are_spotted_in_text_as_a_reader_meets_them():
    assert terms_mentioned("the ELBO in nats, KL(q ‖ p), 0.26 bits/dim") == ["nats", "bits/dim", "ELBO", "KL"]
    assert terms_mentioned("3 of 20 dimensions are active; the amortisation gap") == [
        "active units", "amortisation gap",
    ]  # fmt: skip
    assert terms_mentioned("Interpolate between two digits") == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_page_defines_the_terms_it_uses(page):
    source = page.read_text(encoding="utf-8")
    used, offered = terms_mentioned(page_text(source)), glossary_terms(source)
    assert not set(used) - set(offered), f"{page.name} uses {sorted(set(used) - set(offered))} undefined"
    assert set(offered) <= set(GLOSSARY)
