"""Findings about a capture (``kpsim lint``): black holes, services without endpoints,
cascades that do not give the intended weights, dead and stale rules — data, not text."""
