"""The glossary on a page: an expander defining the terms the page uses (definitions: explorer/state/glossary.py).

Imports no torch: the Overview draws it in its first paint.
"""

from __future__ import annotations

import streamlit as st

from explorer.state.glossary import GLOSSARY

GLOSSARY_LABEL = "📖 Glossary"


def glossary(*terms: str, target=st) -> None:
    """An expander, closed, titled with `terms` and defining each of them (a KeyError names an unknown one)."""
    with target.expander(f"{GLOSSARY_LABEL}: {', '.join(terms)}"):
        st.markdown("\n".join(f"- **{term}**: {GLOSSARY[term]}" for term in terms))
