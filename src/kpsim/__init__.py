"""kpsim: how Kubernetes traffic really flows through a node's iptables NAT rules."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
