"""Observed against expected (counters, ``simulate --observed``) and the causes of uneven
load the rules do not show (``kpsim why``): reuse, affinity, policy, noise."""
