"""Findings about a capture (``kpsim lint``): black holes, services without endpoints,
cascades that do not give the intended weights, dead and stale rules — data, not text."""

from __future__ import annotations

from kpsim.lint.findings import CODES, Finding, Severity, at_or_above
from kpsim.lint.run import LintInput, LintReport, lint_nodes

__all__ = ["CODES", "Finding", "LintInput", "LintReport", "Severity", "at_or_above", "lint_nodes"]
