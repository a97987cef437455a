"""PII replacement: e-mail, phone numbers (mainland mobile and international), mainland
resident ID numbers (validated by their ISO 7064 checksum) and IPv4 addresses become
placeholders; the counts go into the document's metadata."""

from __future__ import annotations

import re

from ..document import Document
from ..stages import Drop, Stage, StageParams, register

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CN_ID = re.compile(r"(?<!\d)[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?!\d)")
CN_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
INTL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}[ -]?\(?\d{1,4}\)?(?:[ -]?\d{2,4}){2,4}(?!\d)")
IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CHECK = "10X98765432"


def valid_cn_id(s: str) -> bool:
    """ISO 7064 MOD 11-2 checksum of an 18-character mainland resident ID."""
    return _CHECK[sum(int(c) * w for c, w in zip(s[:17], _W)) % 11] == s[17].upper()


@register
class PII(Stage):
    name = "pii"

    class Params(StageParams):
        email: str = "<EMAIL>"
        phone: str = "<PHONE>"
        id_number: str = "<ID>"
        ip: str = "<IP>"

    def apply(self, doc: Document) -> Document | Drop:
        t, counts = doc.text, {}

        def sub(rx: re.Pattern, repl: str, key: str, text: str, check=None) -> str:
            n = 0

            def f(m: re.Match) -> str:
                nonlocal n
                if check and not check(m.group(0)):
                    return m.group(0)
                n += 1
                return repl

            out = rx.sub(f, text)
            if n:
                counts[key] = n
            return out

        t = sub(EMAIL, self.p.email, "email", t)
        t = sub(CN_ID, self.p.id_number, "id_number", t, valid_cn_id)
        t = sub(CN_MOBILE, self.p.phone, "phone", t)
        t = sub(INTL_PHONE, self.p.phone, "phone_intl", t)
        t = sub(IPV4, self.p.ip, "ip", t)
        return doc if not counts else doc.with_text(t, pii=counts)
