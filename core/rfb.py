"""The RFB protocol as far as the gateway reads it: a server's greeting."""

from __future__ import annotations

import re

# An RFB server speaks first: "RFB xxx.yyy\n" (RFC 6143, 7.1.1), 003.008 from most servers;
# Apple's Screen Sharing says 003.889 and RealVNC 004.x or 005.x, which still talk 3.8.
RFB_GREETING_LENGTH = 12
_RFB_GREETING = re.compile(rb"RFB \d{3}\.\d{3}\n")


def is_rfb_greeting(data: bytes) -> bool:
    return _RFB_GREETING.fullmatch(data[:RFB_GREETING_LENGTH]) is not None
