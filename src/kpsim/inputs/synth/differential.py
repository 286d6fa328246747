"""Node-like rulesets for the kernel-differential test (bench/differential.py).

    generate(seed) ─▶ Case: restore text + where each endpoint lives + probes (NodePorts)
        kube-proxy: post-1.24 (KUBE-EXT/SVC), ETP Local (KUBE-SVL), pre-1.24 (KUBE-XLB),
                    no endpoints (filter REJECT), affinity (recent)
        Docker hostPort (bridge docker0, FORWARD policy DROP), portmap (CNI-HOSTPORT-*, cni0),
        AWS VPC CNI (CONNMARK, AWS-SNAT-CHAIN-0), Calico-style cali-* chains
        random matches: multiport, limit+LOG, nth, mark masks, iprange, conntrack, addrtype

Same seed, same case. Every address is in 198.18.0.0/15: the node 198.18.1.1 on eth0,
bridge pods 198.18.64.0/24, eni pods 198.18.1.50+, far hosts (other nodes) 198.19.255.0/24.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace

NODE, CLIENT = "198.18.1.1", "198.19.128.2"  # the client: outside the VPC
BRIDGE_NET, BRIDGE_GW = "198.18.64.0/24", "198.18.64.1/24"
POD_CIDR = "198.18.0.0/16"  # the "VPC": pods and nodes
MASQ = "0x4000/0x4000"
_BUILTIN = {
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}
LAYOUTS = ("kp-ext", "kp-svl", "kp-xlb", "kp-reject", "kp-affinity", "docker", "portmap")


@dataclass(frozen=True, slots=True)
class Probe:
    """Connections to one NodePort; ``tags`` say what its rules use (the class)."""

    port: int
    layout: str
    tags: tuple[str, ...] = ()
    sticky: bool = False  # affinity: later connections follow the first


@dataclass(frozen=True, slots=True)
class Case:
    seed: int
    rules: str
    bridge: str
    bridge_pods: tuple[str, ...]
    eni_pods: tuple[tuple[str, str], ...]
    far: tuple[str, ...]
    ip_rules: tuple[str, ...]
    probes: tuple[Probe, ...]
    extras: tuple[str, ...] = ()


@dataclass
class _Tables:
    chains: dict[str, list[str]] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)
    policy: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, table: str, rule: str, chain: str | None = None, first: bool = False) -> None:
        name = chain or rule.split()[1]
        seen = self.chains.setdefault(table, [])
        if name not in _BUILTIN[table] and name not in seen:
            seen.append(name)
        rules = self.rules.setdefault(table, [])
        rules.insert(0, rule) if first else rules.append(rule)

    def declare(self, table: str, chain: str) -> None:
        seen = self.chains.setdefault(table, [])
        if chain not in seen:
            seen.append(chain)

    def text(self) -> str:
        out: list[str] = []
        for table in ("mangle", "nat", "filter"):
            if table not in self.rules and table not in self.chains:
                continue
            out.append(f"*{table}")
            for c in _BUILTIN[table]:
                out.append(f":{c} {self.policy.get((table, c), 'ACCEPT')} [0:0]")
            out += [f":{c} - [0:0]" for c in self.chains.get(table, [])]
            out += self.rules.get(table, [])
            out.append("COMMIT")
        return "\n".join(out) + "\n"


def _h(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16].upper()


def _prob(k: int) -> str:
    return f"{1 / k:.11f}"


class _Builder:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.t = _Tables()
        self.bridge_pods: list[str] = []
        self.eni_pods: list[tuple[str, str]] = []
        self.far: list[str] = []
        self.probes: list[Probe] = []
        self.bridge = self.r.choice(("docker0", "cni0"))
        self.kube = False
        self.iprange = False

    # endpoints ---------------------------------------------------------------
    def endpoint(self, kinds: tuple[str, ...] = ("bridge", "eni", "far")) -> tuple[str, bool]:
        """A new endpoint address and whether it is on this node."""
        kind = self.r.choice(kinds)
        if kind == "bridge" and len(self.bridge_pods) < 5:
            a = f"198.18.64.{2 + len(self.bridge_pods)}"
            self.bridge_pods.append(a)
            return a, True
        if kind in ("bridge", "eni") and len(self.eni_pods) < 4:
            a = f"198.18.1.{50 + len(self.eni_pods)}"
            self.eni_pods.append((a, "eni" + _h("eni", a)[:11].lower()))
            return a, True
        a = f"198.19.255.{5 + len(self.far)}"
        self.far.append(a)
        return a, False

    # kube-proxy --------------------------------------------------------------
    def kube_base(self) -> None:
        if self.kube:
            return
        self.kube = True
        t = self.t
        t.add("nat", '-A PREROUTING -m comment --comment "kubernetes service portals" '
                     "-j KUBE-SERVICES")  # fmt: skip
        t.add("nat", '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
                     "-j KUBE-POSTROUTING")  # fmt: skip
        mark = self.r.choice((f"--set-xmark {MASQ}", "--or-mark 0x4000"))
        t.add("nat", f"-A KUBE-MARK-MASQ -j MARK {mark}")
        t.add("nat", f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ} -j RETURN")
        t.add("nat", "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000")
        t.add("nat", '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic '
                     'requiring SNAT" -j MASQUERADE --random-fully')  # fmt: skip
        t.declare("nat", "KUBE-NODEPORTS")
        t.add("filter", "-A INPUT -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES")
        t.add("filter", "-A FORWARD -j KUBE-FORWARD")
        t.declare("filter", "KUBE-EXTERNAL-SERVICES")
        t.add("filter", "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP")
        t.add("filter", '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
                        f"-m mark --mark {MASQ} -j ACCEPT")  # fmt: skip
        t.add("filter", '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack '
                        'rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT')  # fmt: skip

    def nodeports_jump(self) -> None:
        if not any("KUBE-NODEPORTS" in r and "KUBE-SERVICES" in r
                   for r in self.t.rules.get("nat", [])):  # fmt: skip
            self.t.add("nat", '-A KUBE-SERVICES -m comment --comment "kubernetes service '
                              'nodeports; NOTE: this must be the last rule in this chain" '
                              "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")  # fmt: skip

    def port_match(self, port: int, tags: list[str]) -> str:
        if self.r.random() < 0.25:
            tags.append("multiport")
            return f"-p tcp -m multiport --dports {port},{port + 1000}"
        return f"-p tcp -m tcp --dport {port}"

    def sep(self, name: str, svc: str, ep: str, sticky: bool) -> None:
        t = self.t
        t.add("nat", f'-A {name} -s {ep}/32 -m comment --comment "{svc}" -j KUBE-MARK-MASQ')
        rec = f" -m recent --set --name {name} --mask 255.255.255.255 --rsource" if sticky else ""
        t.add("nat", f'-A {name} -p tcp -m comment --comment "{svc}"{rec} -m tcp '
                     f"-j DNAT --to-destination {ep}:80")  # fmt: skip

    def cascade(self, chain: str, svc: str, eps: list[str], tags: list[str], sticky: bool) -> None:
        """The endpoint choice: statistic random (or nth), affinity first when sticky."""
        seps = [f"KUBE-SEP-{_h(svc, ep)}" for ep in eps]
        if sticky:
            for sep, ep in zip(seps, eps, strict=True):
                self.t.add("nat", f'-A {chain} -m comment --comment "{svc} -> {ep}:80" -m recent '
                                  f"--rcheck --seconds 10800 --reap --name {sep} --mask "
                                  f"255.255.255.255 --rsource -j {sep}")  # fmt: skip
        nth = len(eps) > 1 and not sticky and self.r.random() < 0.2
        if nth:
            tags.append("nth")
        for i, (sep, ep) in enumerate(zip(seps, eps, strict=True)):
            left = len(eps) - i
            if left == 1:
                stat = ""
            elif nth:
                stat = f" -m statistic --mode nth --every {left} --packet 0"
            else:
                stat = f" -m statistic --mode random --probability {_prob(left)}"
            self.t.add("nat", f'-A {chain} -m comment --comment "{svc} -> {ep}:80"{stat} -j {sep}')
            self.sep(sep, svc, ep, sticky)

    def kube_service(self, port: int, layout: str) -> Probe:
        self.kube_base()
        self.nodeports_jump()
        tags: list[str] = []
        svc = f"ns{port}/svc{port}:http"
        h = _h(svc)
        t = self.t
        pm = self.port_match(port, tags)
        if self.r.random() < 0.2:
            tags.append("limit-log")
            t.add("nat", f"-A KUBE-NODEPORTS {pm} -m limit --limit 3/min --limit-burst 1 "
                         f'-j LOG --log-prefix "np{port}: "')  # fmt: skip
        if layout == "kp-reject":
            t.add("filter", f'-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "{svc} has '
                            'no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport '
                            f"{port} -j REJECT --reject-with icmp-port-unreachable")  # fmt: skip
            return Probe(port, layout, tuple(tags))
        sticky = layout == "kp-affinity"
        eps = [self.endpoint()[0] for _ in range(self.r.randint(1, 3))]
        svc_chain = f"KUBE-SVC-{h}"
        if layout in ("kp-ext", "kp-affinity"):
            ext = f"KUBE-EXT-{h}"
            t.add("nat", f'-A KUBE-NODEPORTS {pm} -m comment --comment "{svc}" -j {ext}')
            t.add("nat", f'-A {ext} -m comment --comment "masquerade traffic for {svc} '
                         'external destinations" -j KUBE-MARK-MASQ')  # fmt: skip
            t.add("nat", f"-A {ext} -j {svc_chain}")
            self.cascade(svc_chain, svc, eps, tags, sticky)
        elif layout == "kp-svl":
            ext, svl = f"KUBE-EXT-{h}", f"KUBE-SVL-{h}"
            local = [e for e in eps if not e.startswith("198.19.")] or [self.endpoint(("eni",))[0]]
            t.add("nat", f'-A KUBE-NODEPORTS {pm} -m comment --comment "{svc}" -j {ext}')
            t.add("nat", f'-A {ext} -s {POD_CIDR} -m comment --comment "pod traffic for {svc} '
                         f'external destinations" -j {svc_chain}')  # fmt: skip
            t.add(
                "nat",
                f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {svc} '
                'external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
            )
            t.add(
                "nat",
                f'-A {ext} -m comment --comment "route LOCAL traffic for {svc} external '
                f'destinations" -m addrtype --src-type LOCAL -j {svc_chain}',
            )
            t.add("nat", f"-A {ext} -j {svl}")
            self.cascade(svc_chain, svc, eps, tags, False)
            self.cascade(svl, svc, local, tags, False)
            tags.append("etp-local")
        else:  # kp-xlb: kube-proxy before 1.24
            local_etp = self.r.random() < 0.5
            if local_etp:
                xlb = f"KUBE-XLB-{h}"
                local = [e for e in eps if not e.startswith("198.19.")] or [
                    self.endpoint(("eni",))[0]]  # fmt: skip
                t.add("nat", f"-A KUBE-NODEPORTS -s 127.0.0.0/8 {pm} -j KUBE-MARK-MASQ")
                t.add("nat", f'-A KUBE-NODEPORTS {pm} -m comment --comment "{svc}" -j {xlb}')
                t.add(
                    "nat",
                    f'-A {xlb} -s {POD_CIDR} -m comment --comment "Redirect pods trying '
                    f'to reach external loadbalancer VIP to clusterIP" -j {svc_chain}',
                )
                self.cascade(svc_chain, svc, eps, tags, False)
                self.cascade(xlb, svc, local, tags, False)
                tags.append("etp-local")
            else:
                t.add("nat", f'-A KUBE-NODEPORTS {pm} -m comment --comment "{svc}" '
                             "-j KUBE-MARK-MASQ")  # fmt: skip
                t.add("nat", f'-A KUBE-NODEPORTS {pm} -m comment --comment "{svc}" -j {svc_chain}')
                self.cascade(svc_chain, svc, eps, tags, False)
        return Probe(port, layout, tuple(tags), sticky)

    # Docker, portmap ---------------------------------------------------------
    def docker(self, port: int) -> Probe:
        t, br = self.t, "docker0"
        self.bridge = br
        pod = self.endpoint(("bridge",))[0]
        if "DOCKER" not in self.t.chains.get("nat", []):
            t.add("nat", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER", first=True)
            t.add("nat", f"-A POSTROUTING -s {BRIDGE_NET} ! -o {br} -j MASQUERADE", first=True)
            t.add("nat", f"-A DOCKER -i {br} -j RETURN")
            t.policy[("filter", "FORWARD")] = "DROP"
            t.add("filter", f"-A FORWARD -o {br} -j DOCKER", first=True)
            t.add("filter", f"-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED "
                            "-j ACCEPT", first=True)  # fmt: skip
            t.add("filter", f"-A FORWARD -i {br} ! -o {br} -j ACCEPT")
            t.declare("filter", "DOCKER")
        t.add("nat", f"-A DOCKER ! -i {br} -p tcp -m tcp --dport {port} "
                     f"-j DNAT --to-destination {pod}:80")  # fmt: skip
        tags = []
        if self.r.random() < 0.85:
            t.add("filter", f"-A DOCKER -d {pod}/32 ! -i {br} -o {br} -p tcp -m tcp --dport 80 "
                            "-j ACCEPT")  # fmt: skip
        else:
            tags.append("forward-drop")
        return Probe(port, "docker", tuple(tags))

    def portmap(self, port: int) -> Probe:
        t = self.t
        pod = self.endpoint(("bridge",))[0]
        if "CNI-HOSTPORT-DNAT" not in self.t.chains.get("nat", []):
            t.add("nat", "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT")
            t.add("nat", '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" '
                         "-j CNI-HOSTPORT-MASQ")  # fmt: skip
            t.add("nat", "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade "
                         'mark" -j MARK --set-xmark 0x2000/0x2000')  # fmt: skip
            t.add("nat", "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE")
        dn = f"CNI-DN-{_h('portmap', port)[:20]}"
        t.add(
            "nat",
            f'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"cbr0\\" '
            f'id: \\"{_h(port).lower()}\\"" -m multiport --dports {port} -j {dn}',
        )
        t.add("nat", f"-A {dn} -s {BRIDGE_NET} -p tcp -m tcp --dport {port} "
                     "-j CNI-HOSTPORT-SETMARK")  # fmt: skip
        t.add("nat", f"-A {dn} -s 127.0.0.1/32 -p tcp -m tcp --dport {port} "
                     "-j CNI-HOSTPORT-SETMARK")  # fmt: skip
        t.add("nat", f"-A {dn} -p tcp -m tcp --dport {port} -j DNAT --to-destination {pod}:80")
        return Probe(port, "portmap", ("multiport",))

    # surroundings ------------------------------------------------------------
    def aws(self) -> None:
        t = self.t
        t.add("mangle", '-A PREROUTING -i eth0 -m comment --comment "AWS, primary ENI" -m '
                        "addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark "
                        "0x80/0x80")  # fmt: skip
        t.add("mangle", '-A PREROUTING -i eni+ -m comment --comment "AWS, primary ENI" -j '
                        "CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80")  # fmt: skip
        t.add("nat", '-A PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" '
                     "-j AWS-CONNMARK-CHAIN-0")  # fmt: skip
        t.add("nat", '-A PREROUTING -m comment --comment "AWS, CONNMARK" -j CONNMARK '
                     "--restore-mark --nfmask 0x80 --ctmask 0x80")  # fmt: skip
        t.add("nat", '-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0')
        t.add("nat", f"-A AWS-CONNMARK-CHAIN-0 -d {POD_CIDR} -m comment --comment "
                     '"AWS CONNMARK CHAIN, VPC CIDR" -j RETURN')  # fmt: skip
        t.add("nat", '-A AWS-CONNMARK-CHAIN-0 -m comment --comment "AWS, CONNMARK" -j CONNMARK '
                     "--set-xmark 0x80/0x80")  # fmt: skip
        t.add("nat", f'-A AWS-SNAT-CHAIN-0 -d {POD_CIDR} -m comment --comment "AWS SNAT CHAIN" '
                     "-j RETURN")  # fmt: skip
        t.add(
            "nat",
            '-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype '
            f"! --dst-type LOCAL -j SNAT --to-source {NODE} --random-fully",
        )

    def calico(self) -> None:
        t = self.t
        t.add("mangle", "-A PREROUTING -m comment --comment \"cali:6gwbT8clXdHdC1b1\" "
                        "-j cali-PREROUTING", first=True)  # fmt: skip
        t.add("mangle", '-A cali-PREROUTING -m comment --comment "cali:6BJqBjBC7crtA-7-" '
                        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")  # fmt: skip
        t.add("mangle", '-A cali-PREROUTING -m comment --comment "cali:KX7AGNd6rMcDUai6" '
                        "-m mark --mark 0x10000/0x10000 -j ACCEPT")  # fmt: skip
        t.add("nat", '-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" '
                     "-j cali-POSTROUTING", first=True)  # fmt: skip
        t.add("nat", '-A cali-POSTROUTING -m comment --comment "cali:Z-c7XtVd2Bq7s_hA" '
                     "-j cali-nat-outgoing")  # fmt: skip
        t.add(
            "nat",
            f"-A cali-nat-outgoing -s {BRIDGE_NET} ! -d {BRIDGE_NET} -m comment "
            '--comment "cali:flqWnvo8yq4ULQLa" -j MASQUERADE --random-fully',
        )
        t.add("filter", '-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" '
                        "-j cali-FORWARD", first=True)  # fmt: skip
        t.add("filter", '-A cali-FORWARD -m comment --comment "cali:vjrMJCRpqwy5oRoX" '
                        "-j MARK --set-xmark 0x0/0xe0000")  # fmt: skip
        t.add("filter", '-A cali-FORWARD -m comment --comment "cali:A_sPAO0mcxbT9mOV" '
                        "-m mark --mark 0x0/0x10000 -j cali-from-hep-forward")  # fmt: skip
        t.declare("filter", "cali-from-hep-forward")
        if self.r.random() < 0.5:
            lo, hi = sorted(self.r.sample(range(2, 12), 2))
            t.add("filter", f"-A cali-from-hep-forward -m iprange --src-range 198.19.128.{lo}-"
                            f"198.19.128.{hi} -j MARK --set-xmark 0x10000/0x10000")  # fmt: skip
            self.iprange = True


def generate(seed: int) -> Case:
    """One node-like ruleset and the NodePorts to probe (deterministic in ``seed``)."""
    b = _Builder(seed)
    r = b.r
    extras = [x for x in ("aws", "calico") if r.random() < 0.4]
    if "aws" in extras:
        b.aws()
    probes = []
    for i in range(r.randint(1, 3)):
        layout = r.choice(LAYOUTS)
        port = 30000 + 10 * i + r.randint(0, 9)
        if layout == "docker":
            probes.append(b.docker(port))
        elif layout == "portmap":
            probes.append(b.portmap(port))
        else:
            probes.append(b.kube_service(port, layout))
    if "calico" in extras:
        b.calico()
    if b.bridge_pods and not any(p.layout == "docker" for p in probes):
        b.bridge = "cni0"
    ip_rules = tuple(f"to {a} lookup main prio 512" for a, _ in b.eni_pods)
    if b.eni_pods:
        ip_rules += ("fwmark 0x80/0x80 lookup main prio 1024",)
    if b.iprange:
        probes = [replace(p, tags=(*p.tags, "iprange")) for p in probes]
    return Case(seed, b.t.text(), b.bridge, tuple(b.bridge_pods), tuple(b.eni_pods),
                tuple(b.far), ip_rules, tuple(probes), tuple(extras))  # fmt: skip
