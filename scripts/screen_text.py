"""What every page shows, as JSON, to check that a refactor changed no number on screen.

    git worktree/archive of the old commit:  python scripts/screen_text.py > before.json
    this checkout:                           python scripts/screen_text.py > after.json
    python scripts/screen_text.py --compare before.json after.json

Each page is run with AppTest (offline, the shipped models) and its titles, text, captions, metrics
(the model card's numbers included), messages and widgets (labels, values, options) are written out.
Run from the checkout to measure: it reads app.py from the working directory.
"""

from __future__ import annotations

import difflib
import json
import os
import sys

PAGES = ["overview", "train", "latent_map", "interpolate", "samples", "complete", "posterior", "how_it_works"]
TEXT = ("title", "header", "subheader", "markdown", "caption", "metric", "info", "warning", "error",
        "success", "exception", "code", "latex")  # fmt: skip
WIDGETS = ("selectbox", "radio", "slider", "number_input", "text_input", "checkbox", "button",
           "select_slider", "toggle", "multiselect")  # fmt: skip


def page_text(at) -> dict:
    shown = {}
    for kind in TEXT:
        values = [[e.label, e.value] if kind == "metric" else str(e.value) for e in getattr(at, kind)]
        if values:
            shown[kind] = values
    for kind in WIDGETS:
        values = [[e.label, repr(e.value), repr(getattr(e, "options", None))] for e in getattr(at, kind)]
        if values:
            shown[kind] = values
    return shown


def dump(pages: list[str]) -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ.setdefault("VAE_OFFLINE", "1")
    shown = {}
    for page in pages:
        at = AppTest.from_file(os.path.join(os.getcwd(), "app.py"), default_timeout=300)
        at.run()
        if page != "overview":
            at.switch_page(os.path.join(os.getcwd(), "explorer", "pages", f"{page}.py")).run()
        shown[page] = page_text(at)
    return shown


def compare(before: dict, after: dict) -> bool:
    same = True
    for page in before:
        if before[page] == after.get(page):
            print(f"{page}: identical")
            continue
        same = False
        old, new = (json.dumps(d.get(page), indent=1, sort_keys=True, ensure_ascii=False).splitlines()
                    for d in (before, after))  # fmt: skip
        print(f"{page}: differs")
        print("\n".join(difflib.unified_diff(old, new, lineterm="", n=0)))
    return same


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        with open(sys.argv[2]) as a, open(sys.argv[3]) as b:
            sys.exit(0 if compare(json.load(a), json.load(b)) else 1)
    print(json.dumps(dump(sys.argv[1:] or PAGES), indent=1, sort_keys=True, ensure_ascii=False))
