"""kube-proxy meaning on top of the rule model: services, frontends, endpoints and their
exact shares (services.py, chance.py, names.py), what a capture holds (show.py), and a
question asked of every node (scenario.py)."""
