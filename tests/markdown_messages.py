"""Reading a message the app shows as Markdown the way a visitor sees it, for tests.

`shown` reads code spans by CommonMark's rule (a run of n backticks opens one, the next run of
exactly n closes it, one space is stripped from each side when both are there), independently of
explorer.state.visitor_text, and checks that the Markdown outside them holds nothing from which a
link, an image or HTML could form: the visitor's text may only stand inside a code span.
"""

from __future__ import annotations

import re

_RUN = re.compile(r"`+")
# What makes Markdown (or Streamlit's GFM autolinking) build a link, image or element.
LINK_FORMING = ("://", "www.", "@", "[", "]", "<", ">", "`")


def read(markdown: str) -> tuple[str, str]:
    """(the text `markdown` shows, code spans read back; the Markdown outside its code spans)."""
    text, outside, i = [], [], 0
    while (opening := _RUN.search(markdown, i)) is not None:
        fence = opening.group()
        closing = next((run for run in _RUN.finditer(markdown, opening.end()) if run.group() == fence), None)
        if closing is None:  # an unmatched run is literal backticks: left outside, and then refused
            break
        content = markdown[opening.end() : closing.start()]
        if len(content) > 1 and content.startswith(" ") and content.endswith(" ") and content.strip(" "):
            content = content[1:-1]
        before = markdown[i : opening.start()]
        text += [before, content]
        outside += [before, " "]
        i = closing.end()
    text.append(markdown[i:])
    outside.append(markdown[i:])
    return "".join(text), "".join(outside)


def shown(markdown: str) -> str:
    """What `markdown` shows, with its code spans read back; fails if anything outside a code span
    could form a link, an image or HTML."""
    text, outside = read(markdown)
    for marker in LINK_FORMING:
        assert marker not in outside, f"{marker!r} outside a code span in {markdown!r}"
    return text
