"""``simulate --observed``: the user's counts against the exact shares, as text lines
appended to simulate's output, or an ``observed`` member added to its JSON."""

from __future__ import annotations

import json

from kpsim.explain.simfit import ObservedFit
from kpsim.render.fit_text import fit_doc, fit_lines
from kpsim.render.json import dumps
from kpsim.render.width import DEFAULT, fold


def observed_text(o: ObservedFit, width: int = DEFAULT) -> str:
    head = fold(f"observed ({o.path}) against the exact shares of {o.service}:", width, "", "  ")
    return "\n".join(["", *head, *fit_lines(o.fit, o.pods, width=width)]) + "\n"


def with_observed(simulate_json: str, o: ObservedFit) -> str:
    """simulate's JSON document with an ``observed`` member (schema unchanged otherwise)."""
    doc = json.loads(simulate_json)
    doc["observed"] = {"path": o.path, "service": o.service, **fit_doc(o.fit)}
    return dumps(doc)
