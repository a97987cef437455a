"""The on-disk shard format (writer, reader, index, verify, stats). See docs/shard-format.md."""

from .format import FORMAT_VERSION, Shard, ShardWriter  # noqa: F401
