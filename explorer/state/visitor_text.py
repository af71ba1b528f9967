"""How text that came from a visitor goes into a message: as an inert Markdown code span.

Streamlit renders st.warning/st.error/st.success/st.caption/st.markdown as GitHub-flavoured
Markdown, and its autolinking works on the text after backslash escapes are read: a bare
`https://…`, a `www.` host or an e-mail address became a live link however it was escaped. A code
span is the one inline Markdown element whose content is never parsed (no links, autolinks,
images, HTML, emphasis, `:color[…]`, emoji shortcodes or $math$): checked in Chromium by
tests/browser/test_visitor_text_in_browser.py. So every message that repeats what a visitor sent
(a link's value, a file's name, text read from an uploaded file, a form value quoted back by an
error) puts that text through `inert`, and nothing a visitor sent reaches Markdown any other way.

(One thing a span does not keep: Streamlit rewrites `:material/` to `:material_` in all Markdown
before parsing it, so such a value shows with an underscore; it stays text.)

Pure functions, no Streamlit, in state/ (the lowest room) so share_links can quote with it too.
"""

from __future__ import annotations

import re

QUOTED_CHARS = 40  # how much of a visitor's value a message repeats; the rest is counted, not shown
REASON_CHARS = 600  # how much of a refusal's reason (which may quote the visitor) a message repeats
_BACKTICK_RUNS = re.compile(r"`+")


def _visible(text: str) -> str:
    """Control, format and separator characters written as escapes (\\n, \\u202e…): one line, and
    no invisible or right-to-left characters that make the shown text differ from the value."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def inert(value: object, limit: int = QUOTED_CHARS) -> str:
    """`value` as a Markdown code span that shows it literally, cut to `limit` characters (the
    length that was cut follows the span, in our words). An empty value shows as `""`."""
    text = str(value)
    cut = f"… ({len(text):,} characters)" if len(text) > limit else ""
    shown = _visible(text[:limit]) or '""'
    # A fence one backtick longer than any run inside, padded with a space that Markdown strips
    # again: the value's own backticks (and one at either end) are shown, never close the span.
    # (Markdown strips nothing from a span of spaces only, so those go unpadded.)
    fence = "`" * (1 + max((len(run) for run in _BACKTICK_RUNS.findall(shown)), default=0))
    pad = " " if shown.strip(" ") else ""
    return f"{fence}{pad}{shown}{pad}{fence}{cut}"


def inert_reason(error: BaseException) -> str:
    """Why something a visitor sent was refused, said by a library (vae_core's CheckpointError or
    ConfigError, the image reader): its words are ours but it may quote the visitor's (a file's
    tensor names, a form's value), and which is which is lost in the string, so all of it is inert."""
    return inert(str(error), REASON_CHARS)
