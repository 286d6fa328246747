"""Checking kpsim against the real kernel: predict (predict.py), replay in throw-away
network namespaces (replay/, netns.py), compare (compare.py, stats.py, affinity.py)."""
