"""The kernel-order packet walk, with exact probabilities: knows no Kubernetes.

    Packet, State ─▶ trace.Tracer(ruleset, NodeContext) ─ walk ─▶ TraceResult (outcomes)

packet.py (inputs) ◀─ flow.py (the packet in flight) ◀─ answers.py (each match) ◀─
match.py / target.py / branch.py (one rule) ◀─ walk.py (chains, hooks) ◀─ trace.py."""
