"""The regex words the scan and the fast path share (``formats.iptables.patterns``) accept
exactly what ``ipaddress`` does: every octet 0-255 without a leading zero, nothing else,
whatever follows it (a digit never does in a rule's address)."""

from __future__ import annotations

import ipaddress
import re
from itertools import product

from hypothesis import given
from hypothesis import strategies as st

from kpsim.formats.iptables.patterns import IP, NET, OCTET

#: An octet as the regex was first written: alternatives tried in turn.
_PLAIN = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


def test_octets() -> None:
    """Every string of up to four digits, alone and followed by what follows an octet."""
    found = []
    for size in range(1, 5):
        for digits in map("".join, product("0123456789", repeat=size)):
            for after in ("", ".", "/", ":", " ", "\n"):
                text = digits + after
                one = re.match(OCTET + r"(?![0-9])", text)
                other = re.match(_PLAIN + r"(?![0-9])", text)
                assert (one and one.group()) == (other and other.group()), text
            if re.fullmatch(OCTET, digits):
                found.append(digits)
    assert found == [str(n) for n in range(256)]


@given(st.lists(st.text("0123456789", min_size=1, max_size=4), min_size=4, max_size=4),
       st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=3)))  # fmt: skip
def test_addresses(octets: list[str], prefix: str | None) -> None:
    text = ".".join(octets) + ("" if prefix is None else "/" + prefix)
    try:
        ipaddress.ip_network(text, strict=False)
        valid = all(o == str(int(o)) for o in octets) and (
            prefix is None or (prefix == str(int(prefix)) and int(prefix) <= 32)
        )
    except ValueError:
        valid = False
    assert (re.fullmatch(NET, text) is not None) == valid, text
    assert (re.fullmatch(IP, text) is not None) == (valid and prefix is None), text
