"""iptables-restore text for one table, accumulated in write order.

    *nat
    :PREROUTING ACCEPT [0:0]      built-ins, for a whole-node dump only
    :KUBE-SERVICES - [0:0]        declared chains
    -A KUBE-SERVICES …            rules
    COMMIT

Also the built-in chain lists of each table and kube-proxy's comment quoting.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _q(text: str) -> str:
    """Quote a comment the way kube-proxy does when it may contain spaces."""
    return f'"{text}"'


@dataclass
class _Table:
    """Accumulates one table's chain declarations and rules in write order."""

    name: str
    builtins: tuple[str, ...]
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def chain(self, name: str) -> None:
        self.chains.append(name)

    def add(self, chain: str, *parts: str) -> None:
        self.rules.append(" ".join(("-A", chain, *parts)))

    def render(self, with_builtins: bool) -> list[str]:
        lines = [f"*{self.name}"]
        if with_builtins:
            lines += [f":{b} ACCEPT [0:0]" for b in self.builtins]
        lines += [f":{c} - [0:0]" for c in self.chains]
        lines += self.rules
        lines.append("COMMIT")
        return lines


_FILTER_BUILTINS = ("INPUT", "FORWARD", "OUTPUT")
_NAT_BUILTINS = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
_MANGLE_BUILTINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
