"""The chain graph over networkx (the only package that imports it), and its frozen view."""
