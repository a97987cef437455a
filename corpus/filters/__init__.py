"""Cleaning filters (Falcon/RefinedWeb, Gopher, C4, FineWeb ...). Importing this package registers them.

Each module holds one family of rules; docs/filters.md lists every rule with its default and source.
"""

from . import c4, gopher, langid, lines, pii, spam, unicode, url  # noqa: F401
