"""Where inputs come from: fixture-set discovery (fixtures.py) and the seed-lab
generator (synth/, regen.py) that makes the shipped fixtures."""
