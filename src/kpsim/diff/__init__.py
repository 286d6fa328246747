"""Differences by meaning between captures (``kpsim diff``): services, frontends and
endpoints added or removed, shares, policies and masquerade changed."""
