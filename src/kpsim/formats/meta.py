"""The ``# kpsim:meta {json}`` line, read against its schema.

    # kpsim:meta {"node": "ip-10-0-1-5", "local_addresses": ["10.0.1.5/20"], "pods": […]}
                  └ str ─────────────┘  └ list of IP interfaces ─────┘   └ dicts ┘

Fixtures start with one (iptables-restore skips it as a comment). What kpsim reads from
it (kube.scenario: the node's addresses and interfaces, its pods' names; api: the node's
name) must have the type the schema says: a field that does not is dropped with a
message naming it, so no later stage meets a string where it wants a list. Keys the
schema does not name are kept as JSON gave them. Numbers JSON would turn into a
4,300-digit ``int`` (Python refuses: ValueError), NaN and infinities make their key bad,
not the line; nesting too deep for the JSON reader makes the line bad.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

#: First line(s) of a kpsim fixture: ``# kpsim:meta {json}``; iptables-restore
#: ignores it as a comment, so fixtures stay loadable by the real tools.
META_PREFIX = "# kpsim:meta "

#: Keys whose value is one string (at most ``_LONGEST`` characters).
STRINGS = frozenset(
    {
        "node", "schema", "instance_id", "availability_zone", "capture_time", "sha256",
        "iptables_version", "iptables_backend", "kube_proxy_mode", "kube_proxy_version",
        "source",
    }
)  # fmt: skip
#: Keys whose value is a list of addresses, each ``10.0.1.5`` or ``10.0.1.5/20``.
ADDRESS_LISTS = frozenset({"private_ips", "local_addresses"})
#: Fields of a pod (``pods`` is a list of them); ``ip`` an address, the others strings.
POD_FIELDS = frozenset({"ip", "name", "namespace", "node"})
_LONGEST = 1024
_LONGEST_NUMBER = 100  # digits: more is no metadata a capture carries


class _Bad:
    """What a number JSON cannot give as one (too many digits, NaN, infinity) reads as."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _int(text: str) -> int | _Bad:
    return _Bad(text) if len(text) > _LONGEST_NUMBER else int(text)


def _float(text: str) -> float | _Bad:
    return _Bad(text) if len(text) > _LONGEST_NUMBER else float(text)


_decode = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_Bad).decode


def parse_meta(line: str) -> dict[str, object] | None:
    """The metadata of a ``# kpsim:meta {...}`` line, bad fields dropped; None for other
    lines and for a line whose JSON is not an object (``check_meta`` says what was bad)."""
    raw = load_meta(line)
    return None if raw is None else check_meta(raw)[0]


def load_meta(line: str) -> dict[str, object] | None:
    """The JSON object of a ``# kpsim:meta`` line, unchecked; None when there is none."""
    if not line.startswith(META_PREFIX):
        return None
    try:
        value = _decode(line[len(META_PREFIX) :])
    except (ValueError, RecursionError):  # bad JSON; nesting deeper than the reader goes
        return None
    return value if isinstance(value, dict) else None


def check_meta(raw: dict[str, object]) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """The fields that fit the schema, and ``(key, why)`` for each value dropped."""
    kept: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        if not _printable(key):
            problems.append((key, "the key is not valid Unicode (a lone surrogate)"))
            continue
        checker = _CHECKERS.get(key, _any)
        fixed, why = checker(key, value)
        problems += why
        if fixed is not _DROP:
            kept[key] = fixed
    return kept, problems


_DROP = object()
_Result = tuple[object, list[tuple[str, str]]]


def _any(key: str, value: object) -> _Result:
    """A key the schema does not name: kept, unless something in it cannot be read."""
    why = _unreadable(value)
    return (value, []) if why is None else (_DROP, [(key, why)])


def _unreadable(value: object) -> str | None:
    """A number JSON cannot give as one, or a string no output can print (a lone
    surrogate, which JSON's ``\\ud800`` makes), anywhere in ``value``; else None."""
    stack = [value]  # no recursion: JSON can nest as deep as its reader allows
    while stack:
        item = stack.pop()
        if isinstance(item, _Bad):
            return f"number {_cut(item.text)} cannot be read"
        if isinstance(item, str):
            if not _printable(item):
                return "a string in it is not valid Unicode (a lone surrogate)"
        elif isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(item.keys())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _printable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(key: str, value: object) -> _Result:
    if not isinstance(value, str):
        return _DROP, [(key, f"must be a string, not {_kind(value)}")]
    if len(value) > _LONGEST:
        return _DROP, [(key, f"longer than {_LONGEST} characters")]
    if not _printable(value):
        return _DROP, [(key, "not valid Unicode (a lone surrogate)")]
    return value, []


def _address_list(key: str, value: object) -> _Result:
    if not isinstance(value, list):
        return _DROP, [(key, f"must be a list of addresses, not {_kind(value)}")]
    kept: list[object] = []
    problems: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        why = _address_problem(item, ipaddress.ip_interface)
        if why is None:
            kept.append(item)
        else:
            problems.append((f"{key}[{i}]", why))
    return kept, problems


def _address_problem(item: object, parse: Callable[[str], object]) -> str | None:
    """Why ``item`` is not an address ``parse`` reads, or None."""
    if not isinstance(item, str):
        return f"must be an address string, not {_kind(item)}"
    if len(item) > 64:
        return f"{_cut(item)} is not an address"
    try:
        parse(item)
    except ValueError:
        return f"{_cut(item)} is not an address"
    return None


def _interfaces(key: str, value: object) -> _Result:
    """``{"eth0": ["10.0.1.5/20"], …}``: interface names and the addresses on each."""
    if not isinstance(value, dict):
        return _DROP, [(key, f"must be an object of interfaces, not {_kind(value)}")]
    kept: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    for name, addresses in value.items():
        where = f"{key}.{_cut(name)}"
        if len(name) > _LONGEST or not _printable(name):
            problems.append((where, f"an interface name is at most {_LONGEST} characters"))
            continue
        fixed, why = _address_list(where, addresses)
        problems += why
        if fixed is not _DROP:
            kept[name] = fixed
    return kept, problems


def _pods(key: str, value: object) -> _Result:
    """``[{"ip": "10.1.2.3", "name": …, "namespace": …, "node": …}, …]``."""
    if not isinstance(value, list):
        return _DROP, [(key, f"must be a list of pods, not {_kind(value)}")]
    kept: list[object] = []
    problems: list[tuple[str, str]] = []
    for i, pod in enumerate(value):
        why = _pod_problem(pod)
        if why is None:
            kept.append(pod)
        else:
            problems.append((f"{key}[{i}]", why))
    return kept, problems


def _pod_problem(pod: object) -> str | None:
    if not isinstance(pod, dict):
        return f"must be an object, not {_kind(pod)}"
    if "ip" in pod and (why := _address_problem(pod["ip"], ipaddress.ip_address)) is not None:
        return f"ip {why}"
    for name in ("name", "namespace", "node"):
        field = pod.get(name)
        if name in pod and not (isinstance(field, str) and len(field) <= _LONGEST):
            return f"{name} must be a string of at most {_LONGEST} characters"
    return _unreadable(pod)


def _ip_outputs(key: str, value: object) -> _Result:
    """``{"addr": [...], "route": [...], "rule": [...]}``: ``ip -j`` outputs as printed
    (formats/iproute.py reads them); each a list of objects, anything else dropped."""
    if not isinstance(value, dict):
        return _DROP, [(key, f"must be an object of ip -j outputs, not {_kind(value)}")]
    kept: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    for name, items in value.items():
        where = f"{key}.{_cut(name)}"
        if name not in ("addr", "route", "rule"):
            problems.append((where, "not one of addr, route, rule"))
        elif not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            problems.append((where, "must be a list of objects, as ip -j prints"))
        elif (why := _unreadable(items)) is not None:
            problems.append((where, why))
        else:
            kept[name] = items
    return kept, problems


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    if isinstance(value, (int, float, _Bad)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _cut(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


_CHECKERS: dict[str, Callable[[str, object], _Result]] = {
    **dict.fromkeys(STRINGS, _string),
    **dict.fromkeys(ADDRESS_LISTS, _address_list),
    "interfaces": _interfaces,
    "pods": _pods,
    "ip": _ip_outputs,
}


def meta_line(meta: dict[str, object]) -> str:
    """Render metadata as the one comment line fixtures start with."""
    return META_PREFIX + json.dumps(meta, sort_keys=True, separators=(", ", ": "))
