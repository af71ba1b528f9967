"""Write the Overview's model cards for the pretrained checkpoints (pretrained/overview_cards.json).

    python scripts/make_overview_cards.py [--dir pretrained]

Run it after adding or retraining a checkpoint. The app shows a shipped card only while the
checkpoint's SHA-256 still matches it, and tests/test_overview_cards.py checks that the shipped file
is what this script makes from today's checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository root is not on sys.path

from explorer.state.registry import PRETRAINED_DIR  # noqa: E402
from explorer.ui.resources import CARDS_FILE, overview_cards  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=PRETRAINED_DIR, help="the checkpoints' directory")
    args = parser.parse_args()
    document = overview_cards(args.dir)
    (args.dir / CARDS_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(document['cards'])} cards -> {args.dir / CARDS_FILE}")


if __name__ == "__main__":
    main()
