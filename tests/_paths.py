"""Where the tests find the repository and the shared corpus of published dumps.

CI runs a fresh clone with ``shared/`` beside it; a developer's checkout sits under
/work with /work/shared. Corpus tests skip (with the reason) only when neither exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = (
    REPO.parent / "shared" / "corpus" / "real-dumps",
    Path("/work/shared/corpus/real-dumps"),
)
CORPUS = next((c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[0])
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
