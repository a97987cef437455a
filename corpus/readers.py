"""Readers: turn input files into a stream of `Document`s, reporting every unit they cannot read.

Formats are detected by content (compression magic bytes, then the first bytes of the
payload), not by file extension alone: real corpora ship JSON Lines behind `.txt` and
`.json`, and plain JSONL behind `.zst`. Every file is read as a stream with a bounded
buffer, so a 200 GB WuDao dump or a 100 MB single-line document never sits in memory whole.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import os
import re
import stat
import zlib
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import zstandard

from .document import BadUnit, Document
from .recipe import LimitsConfig, SourceConfig, expand_paths, is_symlink_loop

TEXT_KEYS = ("text", "content", "raw_content", "maintext", "article_text", "fact", "body", "document")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CHUNK = 1 << 20
# the largest single JSON Lines line or JSON array element held in memory to be parsed (a 150 MB
# one-line document is read; a longer one is skipped as `oversize_record`, streamed past unheld)
MAX_RECORD_BYTES = 256 << 20


class ReadError(Exception):
    """Raised in --strict mode for the first unit that cannot be read."""


# ---------------------------------------------------------------------------------------
# bytes: decompression by magic number


def open_bytes(path: str) -> IO[bytes]:
    """Open a file as a binary stream, transparently decompressing gzip/bz2/xz/zstd by content."""
    f = open(path, "rb")
    head = f.read(6)
    f.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if head[:3] == b"BZh":
        return bz2.BZ2File(f)  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(f)  # type: ignore[return-value]
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return _ZstdReader(f)  # type: ignore[return-value]
    return f


def is_compressed(head: bytes) -> bool:
    """gzip, bz2, xz or zstd magic bytes (what `open_bytes` decompresses)."""
    return (head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00"
            or head[:4] == b"\x28\xb5\x2f\xfd")


def line_ranges(path: str, unit_bytes: int) -> list[tuple[int, int, int]]:
    """Cut a file into (start, end, first_line) byte ranges of about `unit_bytes`, each ending
    just after a b'\\n' (or at EOF), with the 1-based number of the range's first line."""
    size = os.path.getsize(path)
    out: list[tuple[int, int, int]] = []
    start, line = 0, 1
    with open(path, "rb") as f:
        while start < size:
            end = min(size, start + unit_bytes)
            if end < size:
                f.seek(end - 1)
                while True:  # extend to the end of the line that crosses the cut
                    chunk = f.read(1 << 16)
                    if not chunk:
                        end = size
                        break
                    k = chunk.find(b"\n")
                    if k >= 0:
                        end = f.tell() - len(chunk) + k + 1
                        break
            out.append((start, end, line))
            f.seek(start)
            left = end - start
            while left:  # count the range's lines for the next range's first line number
                chunk = f.read(min(left, 16 << 20))
                line += chunk.count(b"\n")
                left -= len(chunk)
            start = end
    return out


class _ZstdReader(io.RawIOBase):
    """zstd decompression that reads across frames and raises EOFError on a truncated stream
    (zstandard's stream_reader returns a silent EOF when the input is cut mid-frame)."""

    def __init__(self, f: IO[bytes]):
        self._f, self._d = f, zstandard.ZstdDecompressor()
        self._obj = self._d.decompressobj()
        self._buf = b""
        self._mid_frame = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        while n < 0 or len(self._buf) < n:
            chunk = self._f.read(_CHUNK)
            if not chunk:
                if self._mid_frame and not self._buf:  # hand out what was decoded, then fail
                    raise EOFError("zstd stream ended in the middle of a frame (truncated file)")
                break
            while chunk:
                self._mid_frame = True
                self._buf += self._obj.decompress(chunk)
                chunk = b""
                if self._obj.eof:
                    chunk = self._obj.unused_data
                    self._obj = self._d.decompressobj()
                    self._mid_frame = False
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self._f.close()
        super().close()


_STREAM_ERRORS = (EOFError, OSError, zstandard.ZstdError, lzma.LZMAError, ValueError, zlib.error)


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Split a binary stream on b'\\n' only (U+2028 inside JSON strings must not split a line)."""
    for line, _ in iter_lines_capped(stream, 1 << 62):
        yield line  # type: ignore[misc]


def iter_lines_capped(stream: IO[bytes], cap: int) -> Iterator[tuple[bytes | None, int]]:
    """(line, length) per b'\\n'-terminated line, in time linear in the line's length however long
    it is (pieces are joined once); a line longer than `cap` bytes is (None, length), its bytes
    dropped as they stream past."""
    pieces: list[bytes] = []
    size, over = 0, False
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        parts = chunk.split(b"\n")
        last = parts.pop()
        for k, part in enumerate(parts):
            size += len(part)
            if over or size > cap:
                yield None, size
            elif k == 0 and pieces:
                yield b"".join(pieces) + part, size
            else:
                yield part, size
            pieces, size, over = [], 0, False
        size += len(last)
        if not over and last:
            pieces.append(last)
            if size > cap:
                over, pieces = True, []
    if pieces or over:
        yield (None if over else b"".join(pieces)), size


# ---------------------------------------------------------------------------------------
# text: encodings and clean-up


def detect_encoding(sample: bytes) -> str:
    """Guess the encoding from a sample: BOM, then strict UTF-8, then the better of GB18030/Big5."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith(codecs.BOM_UTF32_LE) or sample.startswith(codecs.BOM_UTF32_BE):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF16_LE) or sample.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    bomless = _utf16_without_bom(sample)
    if bomless:
        return bomless
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        # a few bad bytes in a UTF-8 file must not turn it all into GB18030 mojibake: stay UTF-8
        # (bad bytes become U+FFFD and are reported) unless the sample is mostly not UTF-8
        text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(sample, final=False)
        if text and text.count("\ufffd") <= max(2, len(text) // 1000) and sum(ord(c) > 127 for c in text) > 0:
            return "utf-8"
    best, best_score = "utf-8", -1.0
    for enc in ("gb18030", "big5"):
        text = sample.decode(enc, errors="replace")
        if not text:
            continue
        good = sum(1 for c in text if c.isascii() or "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f"
                   or "\uff00" <= c <= "\uffef")
        score = good / len(text) - text.count("\ufffd") / len(text)
        if score > best_score:
            best, best_score = enc, score
    return best


def _utf16_without_bom(sample: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' for BOM-less UTF-16 of mostly Latin text (a NUL in every other
    byte, which also passes as UTF-8 full of NULs), else None."""
    n = len(sample) // 2 * 2
    if n < 8:
        return None
    even, odd = sample[0:n:2], sample[1:n:2]
    for enc, zero, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if zero.count(0) > 0.6 * len(zero) and other.count(0) < 0.02 * len(other):
            try:
                codecs.getincrementaldecoder(enc)().decode(sample[:n], final=False)
                return enc
            except UnicodeDecodeError:
                pass
    return None


UTF8 = ("utf-8", "utf-8-sig", "utf8")
_HIGH = bytes(range(128, 256))


def _replacements(raw: bytes, text: str, enc: str) -> int:
    """U+FFFD in `text` that decoding `raw` with errors='replace' added (not literal ones)."""
    n = text.count("\ufffd")
    if n:
        try:
            n -= raw.count("\ufffd".encode(enc))
        except (UnicodeEncodeError, LookupError):
            pass
    return max(n, 0)


def _decode_as(raw: bytes, enc: str, errors: str, final: bool) -> tuple[str, bytes]:
    """Decode `raw`; bytes of a character cut at the end are returned (when not `final`)."""
    d = codecs.getincrementaldecoder(enc)(errors=errors)
    text = d.decode(raw, final=final)
    return text, (b"" if final else d.getstate()[0])


def decode_block(raw: bytes, enc: str, explicit: bool = False, final: bool = True) -> tuple[str, int, bytes]:
    """Decode one line or block of a file whose encoding is `enc`: (text, characters replaced,
    undecoded tail of a character cut at the block end). The encoding is chosen per block, so one
    bad byte costs one U+FFFD, never a re-decode of the file: strict UTF-8 first (a UTF-8 block is
    UTF-8 whatever the file's guess), then the file's legacy encoding strictly; a UTF-8 file's block
    that is mostly not UTF-8 is tried as GB18030/Big5 (a mixed file); else `enc` with U+FFFD for
    the bad bytes, counted. An `explicit` encoding (the recipe's) is never second-guessed."""
    base = "utf-8" if enc in UTF8 else enc
    if final and (base == "utf-8" or not explicit):
        try:  # the common case, without building decoders
            return raw.decode("utf-8"), 0, b""
        except UnicodeDecodeError:
            pass
    order = [base] if explicit or base != "utf-8" and not _ascii_compatible(base) else list(dict.fromkeys(["utf-8", base]))
    for e in order:
        try:
            text, tail = _decode_as(raw, e, "strict", final)
            return text, 0, tail
        except UnicodeDecodeError:
            pass
    text, tail = _decode_as(raw, base, "replace", final)
    n = _replacements(raw, text, base)
    if base == "utf-8" and not explicit and n * 4 >= len(raw) - len(raw.translate(None, _HIGH)):
        for alt in ("gb18030", "big5"):  # mostly not UTF-8: a block in a legacy encoding
            try:
                t2, tail2 = _decode_as(raw, alt, "strict", final)
                if not looks_binary(raw[:8192], alt):
                    return t2, 0, tail2
            except UnicodeDecodeError:
                pass
    return text, n, tail


def _ascii_compatible(enc: str) -> bool:
    """ASCII bytes mean ASCII characters (UTF-8, GB18030, Big5, ...; not UTF-16/32)."""
    if enc in UTF8:
        return True
    try:
        return "\n".encode(enc) == b"\n" and "{".encode(enc) == b"{"
    except LookupError:
        return False


class TextBlocks:
    """A binary stream as decoded text blocks of about 1 MiB, each cut after a b'\\n' when the
    block has one (so an encoding switch happens at a line start) and decoded by `decode_block`.
    `replaced` counts the U+FFFD inserted; `consumed` the bytes turned into text so far."""

    def __init__(self, stream: IO[bytes], enc: str, explicit: bool = False):
        self.stream, self.enc, self.explicit = stream, enc, explicit
        self.replaced = 0
        self.consumed = 0

    def __iter__(self) -> Iterator[str]:
        tail = b""
        while True:
            chunk = self.stream.read(_CHUNK)
            final = not chunk
            data = tail + chunk
            if not data:
                return
            rest = b""
            if not final:
                k = data.rfind(b"\n")
                if k >= 0:
                    data, rest = data[: k + 1], data[k + 1:]
            text, n, pending = decode_block(data, self.enc, self.explicit, final)
            if len(pending) > 16:  # not a cut character: a stuck decoder; replace those bytes
                text += pending.decode(self.enc if self.enc not in UTF8 else "utf-8", errors="replace")
                pending = b""
            self.replaced += n
            self.consumed += len(data) - len(pending)
            tail = pending + rest
            if text:
                yield text
            if final:
                return


class _Transcode(io.RawIOBase):
    """UTF-16/UTF-32 bytes as UTF-8 bytes, so that lines split on b'\\n' (in UTF-16 a newline is
    two bytes and splitting on one byte misaligns every later line). Bad units are counted."""

    def __init__(self, stream: IO[bytes], enc: str):
        self._s, self._d = stream, codecs.getincrementaldecoder(enc)(errors="replace")
        self._buf, self._eof, self.replaced = b"", False, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        while not self._eof and (n is None or n < 0 or len(self._buf) < n):
            b = self._s.read(_CHUNK)
            self._eof = not b
            text = self._d.decode(b, final=self._eof)
            self.replaced += text.count("\ufffd")
            self._buf += text.encode("utf-8", errors="replace")
        if n is None or n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def clean_text(text: str) -> str:
    """CRLF/CR -> LF and removal of NUL and other C0 control characters (tabs and newlines kept)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CTRL.sub("", text)


def looks_binary(sample: bytes, enc: str | None = None) -> bool:
    """True when a (decompressed) sample is not text: many NULs or control bytes, or (`enc` a
    legacy CJK guess) bytes that only decode to rare or unassigned characters. Random bytes with
    few control bytes are never UTF-8, and as GB18030 or Big5 they are mostly characters that real
    text hardly uses (outside GB2312 / Big5 level 1, private use, unassigned, U+FFFD)."""
    if not sample:
        return False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (enc or "").startswith(("utf-16", "utf-32")):
        return False
    ctrl = sum(1 for b in sample[:4096] if b < 9 or 13 < b < 32)
    if ctrl / min(len(sample), 4096) > 0.10:
        return True
    if enc in ("gb18030", "gbk", "gb2312", "big5"):
        text = sample[:8192].decode(enc, errors="replace")
        high = [c for c in text if c > "\x7f"]
        if len(high) < 16:
            return False
        rare = sum(1 for c in high if _rare(c, enc))
        return rare > 0.3 * len(high)
    return False


def _rare(c: str, enc: str) -> bool:
    o = ord(c)
    if c == "\ufffd" or 0x80 <= o < 0xA0 or 0xE000 <= o <= 0xF8FF or o > 0xFFFF or unicodedata.category(c) == "Cn":
        return True
    if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf":
        try:
            b = c.encode("gb2312" if enc != "big5" else "big5")
        except UnicodeEncodeError:
            return True
        return enc == "big5" and b[0] >= 0xC9  # Big5 level 2: the less common characters
    return False


# ---------------------------------------------------------------------------------------
# records -> text


def record_text(rec: Any, src: SourceConfig) -> str | None:
    """Text of one JSON/table record: the template, the text_key, or the first usual key found."""
    if isinstance(rec, str):
        return rec
    if not isinstance(rec, dict):
        return None
    if src.template:
        try:
            return src.template.format_map(_Joined(rec))
        except KeyError:
            return None
    if not src.text_key and "content" in rec and "title" in rec and ("titleUkey" in rec or "uniqueKey" in rec):
        # a WuDao record: the title is part of the text
        return f"{rec['title']}\n{rec['content']}" if rec.get("title") else str(rec["content"])
    keys = [src.text_key] if src.text_key else list(TEXT_KEYS)
    for k in keys:
        v = rec.get(k)
        if v is None:
            continue
        if isinstance(v, list):  # e.g. PubMed article_text: a list of sentences
            return "\n".join(str(x) for x in v if x is not None)
        if isinstance(v, (str, int, float)):
            return str(v)
    if not src.text_key and "问" in rec and "答" in rec:  # MedicalGPT's medical_corpus
        return f"{rec['问']}\n{rec['答']}"
    return None


class _Joined(dict):
    def __getitem__(self, k: str) -> str:
        v = dict.__getitem__(self, k)
        if isinstance(v, list):
            return "\n".join(str(x) for x in v)
        return "" if v is None else str(v)


def _meta_of(rec: dict) -> dict[str, Any]:
    md: dict[str, Any] = {}
    meta = rec.get("meta")
    if isinstance(meta, dict) and "pile_set_name" in meta:
        md["subset"] = meta["pile_set_name"]
    for k in ("url", "source_domain", "dataType", "title", "lang", "language"):
        v = rec.get(k)
        if v is None and isinstance(rec.get("metadata"), dict):
            v = rec["metadata"].get(k if k != "url" else "warc_url", rec["metadata"].get(k))
        if isinstance(v, str) and v:
            md[k] = v[:500]
    return md


# ---------------------------------------------------------------------------------------
# the reader


class FileReader:
    """Reads one input file of a source as Documents and BadUnits (both yielded, in order).

    `rel` is the file's name relative to its source root: it forms document ids, so ids are
    the same wherever the corpus is mounted.
    """

    def __init__(self, path: str, rel: str, src: SourceConfig, limits: LimitsConfig,
                 byte_range: tuple[int, int, int] | None = None):
        self.path, self.rel, self.src, self.limits = path, rel, src, limits
        self.byte_range = byte_range  # (start, end, first line) of a plain JSON Lines file
        self.records = 0
        self.replaced = 0  # characters replaced by U+FFFD while decoding (the build report sums them)

    # -- helpers -------------------------------------------------------------------------
    def _bad(self, reason: str, line: int | None = None, offset: int | None = None, detail: str = "") -> BadUnit:
        bad = BadUnit(self.rel, reason, line, offset, detail)
        if self.limits.strict:
            raise ReadError(f"{self.path}: {reason} (line {line}, offset {offset}) {detail[:200]}")
        return bad

    def _document(self, doc_id: str, text: str, meta: dict[str, Any]) -> Document:
        """The one document constructor of every format: the text as it is, the file it came from
        and the source's kind (the domain classifier passes domain sources through). Stage settings
        do not ride along: the per-source language list is the language stage's own parameter
        (`Recipe.stages_for`)."""
        return Document(doc_id, text, self.src.name, {**meta, "file": self.rel, "source_kind": self.src.kind})

    def _doc(self, key: str, text: str, meta: dict[str, Any] | None = None) -> Iterator[Document | BadUnit]:
        """Emit a document, enforcing the size cap (split into pieces, or drop with a reason)."""
        self.records += 1
        text = clean_text(text)
        doc_id = f"{self.src.name}/{key}"
        meta = meta or {}
        cap = self.limits.max_doc_chars
        if len(text) <= cap:
            yield self._document(doc_id, text, meta)
            return
        if self.limits.oversize == "drop":
            yield self._bad("oversize_document", detail=f"{doc_id}: {len(text)} chars > max_doc_chars={cap}")
            return
        for k, piece in enumerate(split_oversize(text, cap)):
            yield self._document(f"{doc_id}#{k}", piece, {**meta, "oversize_piece": k})

    # -- entry ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Document | BadUnit]:
        fmt = self.src.format
        if is_symlink_loop(self.path):  # expand_paths hands a looping symlink over unwalked
            yield self._bad("symlink_loop", offset=0, detail=f"{self.path} -> {os.path.realpath(self.path)}: "
                            "a symlink back to a directory that contains it; not followed")
            return
        if fmt == "hf" or os.path.isdir(self.path):
            yield from self._read_hf()
            return
        kind_err = _not_regular(self.path)
        if kind_err:  # a FIFO/device/socket would block open() or read() forever
            yield self._bad("not_a_regular_file", offset=0, detail=kind_err)
            return
        if fmt == "parquet" or (fmt == "auto" and _has_magic(self.path, b"PAR1")):
            yield from self._read_parquet()
            return
        if os.path.getsize(self.path) == 0:
            yield self._bad("empty_file")
            return
        try:
            stream = open_bytes(self.path)
            head = _peek(stream)
            while head and not head.strip() and len(head) < (64 << 20):  # leading blank lines
                more = stream.read(_CHUNK)
                if not more:
                    break
                head += more
        except _STREAM_ERRORS as e:
            yield self._bad("corrupt_compressed_stream", offset=0, detail=repr(e))
            return
        if not head.strip():
            yield self._bad("empty_file")
            return
        enc = self.src.encoding or detect_encoding(head)
        if not self.src.encoding and looks_binary(head, enc):
            yield self._bad("binary_content", offset=0,
                            detail="more than 10% control bytes, or characters text does not use, in the first KiBs")
            return
        kind = fmt if fmt != "auto" else self._sniff(head, enc)
        if self.byte_range is not None:
            with stream:
                yield from self._read_jsonl_range(enc)
            return
        body: IO[bytes] = _Rewind(head, stream)
        transcode, bom = None, 0
        if not _ascii_compatible(enc):  # UTF-16/32: read as UTF-8 (offsets are of that UTF-8)
            body = transcode = _Transcode(body, enc)  # type: ignore[assignment]
            enc = "utf-8"
        elif enc in UTF8 and head.startswith(codecs.BOM_UTF8):
            body, enc, bom = _Rewind(head[3:], stream), "utf-8", 3  # offsets stay file offsets
        try:
            with stream:
                if kind in ("jsonl",):
                    yield from self._read_jsonl(body, enc, 1, bom)
                elif kind in ("json", "wudao"):
                    yield from self._read_json(body, enc)
                elif kind == "csv":
                    yield from self._read_csv(body, enc)
                else:
                    yield from self._read_text(body, enc)
        except _STREAM_ERRORS as e:
            yield self._bad("truncated_or_corrupt_stream", detail=f"{type(e).__name__}: {e}")
        if transcode is not None and transcode.replaced:
            self.replaced += transcode.replaced
            yield self._bad("undecodable_bytes", detail=f"{transcode.replaced} byte sequences not valid "
                            "UTF-16/32 were replaced by U+FFFD (the text was kept)")

    def _sniff(self, head: bytes, enc: str) -> str:
        text = head.decode(enc, errors="replace").lstrip("\ufeff \t\r\n")
        lower = self.rel.lower()
        if text.startswith("["):
            return "json"
        if text.startswith("{"):
            if "\n" not in text.rstrip("\r\n"):  # the first line is longer than the sample: JSON Lines
                return "jsonl"
            first = text.split("\n", 1)[0].strip()
            try:
                json.loads(first)
                return "jsonl"
            except json.JSONDecodeError:
                # one line that is not a whole object: a pretty-printed JSON document, or JSONL
                # whose first line is broken; a second line that parses decides.
                for line in text.split("\n")[1:6]:
                    try:
                        if isinstance(json.loads(line), dict):
                            return "jsonl"
                    except json.JSONDecodeError:
                        pass
                return "json"
        if re.search(r"\.csv(\.\w+)?$", lower):
            return "csv"
        return "txt"

    # -- JSON Lines ----------------------------------------------------------------------
    def splittable(self) -> bool:
        """An uncompressed JSON Lines file: can be read in byte ranges cut at line ends."""
        if self.src.format not in ("auto", "jsonl") or os.path.isdir(self.path):
            return False
        if _not_regular(self.path):
            return False
        with open(self.path, "rb") as f:
            head = f.read(65536)
        if not head.strip() or is_compressed(head) or looks_binary(head) or head.startswith(b"PAR1"):
            return False
        enc = self.src.encoding or detect_encoding(head)
        if not _ascii_compatible(enc) or looks_binary(head, enc):  # UTF-16/32 lines are not cut at b"\n"
            return False
        return self.src.format == "jsonl" or self._sniff(head, enc) == "jsonl"

    def _read_jsonl_range(self, enc: str) -> Iterator[Document | BadUnit]:
        start, end, first_line = self.byte_range  # type: ignore[misc]
        with open(self.path, "rb") as f:
            f.seek(start)
            yield from self._read_jsonl(_Limited(f, end - start), enc, first_line, start)

    def _read_jsonl(self, stream: IO[bytes], enc: str, first_line: int = 1,
                    offset: int = 0) -> Iterator[Document | BadUnit]:
        explicit = bool(self.src.encoding)
        for lineno, (raw, size) in enumerate(iter_lines_capped(stream, MAX_RECORD_BYTES), first_line):
            start, offset = offset, offset + size + 1
            if raw is None:
                yield self._bad("oversize_record", lineno, start,
                                f"a line of {size} bytes > {MAX_RECORD_BYTES} bytes (skipped unread)")
                continue
            if not raw.strip():
                continue
            if lineno == 1 and start == 0 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            line, replaced, _ = decode_block(raw, enc, explicit)
            del raw
            if replaced:  # the line is still read: one cut character costs one U+FFFD
                self.replaced += replaced
                yield self._bad("undecodable_bytes", lineno, start,
                                f"{replaced} byte sequences not valid {enc} were replaced by U+FFFD (the line was kept)")
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                yield self._bad("malformed_json", lineno, start, f"{e.msg} at column {e.colno}: {line[:80]!r}")
                continue
            except (ValueError, RecursionError) as e:  # e.g. int max str digits, nesting too deep
                yield self._bad("malformed_json", lineno, start, f"{type(e).__name__}: {str(e)[:120]}")
                continue
            del line
            yield from self._record(rec, f"{self.rel}:{lineno}", lineno, start)

    def _record(self, rec: Any, key: str, lineno: int | None, offset: int | None) -> Iterator[Document | BadUnit]:
        if _is_wudao(rec, self.src) and (not isinstance(rec["content"], str)
                                         or not isinstance(rec.get("title") or "", str)):
            yield self._bad("bad field type", lineno, offset,
                            f"WuDao content={type(rec['content']).__name__} title={type(rec.get('title')).__name__}")
            return
        text = record_text(rec, self.src)
        if text is not None:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:  # lone surrogates such as "\ud800" from JSON escapes
                yield self._bad("lone_surrogate", lineno, offset, str(e)[:120])
                return
        if text is None:
            keys = list(rec)[:8] if isinstance(rec, dict) else type(rec).__name__
            yield self._bad("no_text_field", lineno, offset, f"keys={keys}")
            return
        meta = _meta_of(rec) if isinstance(rec, dict) else {}
        own = rec.get(self.src.id_key or "id") if isinstance(rec, dict) else None
        if isinstance(own, (str, int)) and not isinstance(own, bool):
            meta["record_id"] = str(own)  # the input's own id: `corpus clean` keys its rows by it
        if isinstance(rec, dict) and self.src.id_key and rec.get(self.src.id_key) is not None:
            key = f"{self.rel}:{rec[self.src.id_key]}"
        yield from self._doc(key, text, meta)

    # -- JSON documents and arrays (WuDao) -----------------------------------------------
    def _read_json(self, stream: IO[bytes], enc: str) -> Iterator[Document | BadUnit]:
        """Stream a JSON array element by element (WuDao), or read top-level JSON values.

        A value is parsed by the C decoder from a buffer of about one block; one that runs past
        the buffer is followed by `_Extent` (string- and escape-aware bracket counting) over the
        next blocks, joined once it ends and parsed once (linear in its size, any size up to
        MAX_RECORD_BYTES; bigger ones are scanned past unheld). A malformed element is reported
        with its byte offset and the reader resumes at the next `{` that parses as an element."""
        blocks = TextBlocks(stream, enc, bool(self.src.encoding))
        it = iter(blocks)
        codec = "utf-8" if enc in UTF8 else enc
        decoder = json.JSONDecoder()
        buf, pos, eof = "", 0, False
        in_array, index = None, 0

        def offset(p: int) -> int:  # bytes read so far minus those of buf[p:] (exact for clean text)
            return blocks.consumed - len(buf[p:].encode(codec, errors="replace"))

        def fill() -> bool:
            nonlocal buf, pos, eof
            s = next(it, None)
            if s is None:
                eof = True
                return False
            buf, pos = buf[pos:] + s, 0
            return True

        def resync(start: int) -> None:
            """Move `pos` from a bad value at `start` to the next element start (or the end)."""
            nonlocal buf, pos
            i = start + 1
            while True:
                j = buf.find("{", i)
                while j >= 0:
                    k = j - 1
                    while k >= 0 and buf[k] in " \t\r\n":
                        k -= 1
                    if k < 0 or buf[k] != ":":  # a nested object's value is not an element
                        ok = _parses_as_element(decoder, buf, j, eof, bool(in_array))
                        if ok:
                            pos = j
                            return
                    j = buf.find("{", j + 1)
                if eof:
                    pos = len(buf)
                    return
                keep = max(0, len(buf) - 64)
                buf, pos, i = buf[keep:], 0, max(0, len(buf) - keep)
                if not fill():
                    pos = len(buf)
                    return

        fill()
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,\ufeff":
                pos += 1
            if pos >= len(buf):
                if eof or not fill():
                    break
                continue
            if in_array is None:
                in_array = buf[pos] == "["
                if in_array:
                    pos += 1
                    continue
            if in_array and buf[pos] == "]":
                pos += 1  # another array may follow (two arrays concatenated): read it too
                in_array = None
                continue
            start = pos
            try:
                obj, end = decoder.raw_decode(buf, pos)
                if end >= len(buf) and not eof and not isinstance(obj, (dict, list, str)):
                    fill()  # a number or literal at the end of the buffer may go on in the next block
                    continue
            except json.JSONDecodeError as e:
                incomplete = e.msg.startswith("Unterminated string") or e.pos >= len(buf) - 16
                if incomplete and not eof and buf[pos] in "{[\"":
                    kind, text, eof2 = self._wait_for_end(it, buf, pos)
                    if kind == "joined":  # the whole value is in `text` now: parse it once
                        buf, pos = text, 0
                        continue
                    buf, pos, start = text, 0, 0
                    eof = eof or eof2
                    if kind == "oversize":
                        yield self._bad("oversize_record", offset=None,
                                        detail=f"element {index}: over {MAX_RECORD_BYTES} bytes (skipped unread)")
                        index += 1
                        continue
                    incomplete = eof2  # a raw newline in a string ended it: malformed; EOF: truncated
                elif incomplete and not eof:
                    if fill():
                        continue
                reason = "truncated_json" if incomplete and eof else "malformed_json"
                at = offset(start)
                resync(start)
                skipped = "to the end of the file" if pos >= len(buf) and eof else "to the next element"
                yield self._bad(reason, offset=at, detail=f"element {index}: {e.msg} (skipped {skipped})")
                index += 1
                continue
            except (RecursionError, ValueError) as e:  # nesting too deep, int max str digits
                at = offset(start)
                resync(start)
                yield self._bad("malformed_json", offset=at, detail=f"element {index}: {type(e).__name__}: {str(e)[:100]}")
                index += 1
                continue
            key = f"{self.rel}:{index}" if in_array or index else self.rel
            for item in self._record(obj, key, None, None):
                if isinstance(item, BadUnit):  # the byte offset costs an encode: only for a bad unit
                    item.offset = offset(pos)
                yield item
            index += 1
            pos = end
        if blocks.replaced:
            self.replaced += blocks.replaced
            yield self._bad("undecodable_bytes", detail=f"{blocks.replaced} byte sequences not valid {enc} "
                            "were replaced by U+FFFD (the text was kept)")

    @staticmethod
    def _wait_for_end(it: Iterator[str], buf: str, pos: int) -> tuple:
        """Read blocks until the value starting at buf[pos] ends: ('joined', text) with the whole
        value first; ('oversize', rest, eof) after scanning past one over MAX_RECORD_BYTES;
        ('damaged', text, eof) when a raw newline inside a string or EOF ends it first."""
        ext = _Extent()
        end = ext.feed(buf, pos)
        if end is not None:
            return ("damaged", buf[pos:], False)
        parts, size, held = [buf[pos:]], len(buf) - pos, True
        for s in it:
            end = ext.feed(s, 0)
            size += len(s)
            if held and size > MAX_RECORD_BYTES:
                held, parts = False, []
            if end is not None:
                if not held:
                    return ("oversize", s[end:], False)
                parts.append(s)
                return ("joined" if not ext.damaged else "damaged", "".join(parts), False)
            if held:
                parts.append(s)
        if not held:
            return ("oversize", "", True)
        return ("damaged", "".join(parts), True)

    # -- CSV -----------------------------------------------------------------------------
    def _read_csv(self, stream: IO[bytes], enc: str) -> Iterator[Document | BadUnit]:
        blocks = TextBlocks(stream, enc, bool(self.src.encoding))
        lines = (line for block in blocks for line in io.StringIO(block, newline=""))
        csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES))  # a 200 KB field is a field
        reader = csv.DictReader(lines)
        rowno = 1
        while True:
            rowno += 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                yield self._bad("malformed_csv", rowno, None, str(e)[:200])
                continue
            yield from self._record(row, f"{self.rel}:{rowno}", rowno, None)
        if blocks.replaced:
            self.replaced += blocks.replaced
            yield self._bad("undecodable_bytes", detail=f"{blocks.replaced} byte sequences not valid {enc} "
                            "were replaced by U+FFFD (the text was kept)")

    # -- plain text and markdown ---------------------------------------------------------
    def _read_text(self, stream: IO[bytes], enc: str) -> Iterator[Document | BadUnit]:
        blocks = TextBlocks(stream, enc, bool(self.src.encoding))
        mode = "file" if self.src.format == "md" else self.src.txt_mode
        chunks: Iterator[str] = iter(blocks)
        if self.src.format == "md":  # HTML comments are markup, not training text (issue 18)
            chunks = drop_html_comments(chunks)

        if mode == "file":
            # bounded: pieces of at most max_doc_chars are emitted as the file streams in
            cap, acc, piece, total, dropped = self.limits.max_doc_chars, "", 0, 0, False

            def piece_doc(text: str, k: int) -> Document:
                return self._document(f"{self.src.name}/{self.rel}#{k}", clean_text(text), {"oversize_piece": k})

            for s in chunks:
                total += len(s)
                if dropped:
                    continue
                acc += s
                if len(acc) > cap and self.limits.oversize == "drop":
                    dropped, acc = True, ""
                while len(acc) > cap:
                    cut = _cut_point(acc, cap)
                    yield piece_doc(acc[:cut], piece)
                    acc, piece = acc[cut:], piece + 1
            if dropped:
                self.records += 1
                yield self._bad("oversize_document", detail=f"{total} chars > max_doc_chars={cap}")
            elif piece == 0:
                yield from self._doc(self.rel, acc)
            else:
                self.records += 1
                if acc:
                    yield piece_doc(acc, piece)
        else:
            # `pend` holds the text after the last separator as pieces, joined only when a
            # separator ends it: a 150 MB line or paragraph costs linear time
            pend: list[str] = []
            n, lineno = 0, 1
            for s in chunks:
                s = s.replace("\r\n", "\n")
                if "\n" not in s:
                    pend.append(s)
                    continue
                if mode == "line":
                    parts = s.split("\n")
                    seps = ["\n"] * (len(parts) - 1)
                    parts[0] = "".join(pend) + parts[0]
                    pend = [parts.pop()]
                else:
                    # a separator (a blank line) may start in the trailing whitespace of `pend`
                    ws: list[str] = []
                    while pend and not pend[-1].strip():
                        ws.insert(0, pend.pop())
                    if pend and pend[-1] != pend[-1].rstrip():
                        last = pend.pop()
                        body = last.rstrip()
                        pend.append(body)
                        ws.insert(0, last[len(body):])
                    split = re.split(r"(\n\s*\n)", "".join(ws) + s)
                    if len(split) == 1:
                        pend.append(split[0])
                        continue
                    parts, seps = split[0::2], split[1::2]
                    parts[0] = "".join(pend) + parts[0]
                    pend = [parts.pop()]
                for p, sep in zip(parts, seps):
                    if p.strip():
                        yield from self._doc(f"{self.rel}:{n}", p, {"line": lineno})
                        n += 1
                    lineno += p.count("\n") + sep.count("\n")
            acc = "".join(pend)
            if acc.strip():
                yield from self._doc(f"{self.rel}:{n}", acc, {"line": lineno})
        if blocks.replaced:
            self.replaced += blocks.replaced
            yield self._bad("undecodable_bytes", detail=f"{blocks.replaced} byte sequences not valid {enc} were replaced by U+FFFD")

    # -- columnar ------------------------------------------------------------------------
    def _read_parquet(self) -> Iterator[Document | BadUnit]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError subclasses
            yield self._bad("corrupt_parquet", detail=repr(e))
            return
        n = 0
        try:
            for batch in pf.iter_batches(batch_size=1024):
                for rec in batch.to_pylist():
                    yield from self._record(rec, f"{self.rel}:{n}", n, None)
                    n += 1
        except Exception as e:
            yield self._bad("corrupt_parquet", line=n, detail=repr(e))

    def _read_hf(self) -> Iterator[Document | BadUnit]:
        import datasets

        try:
            ds = datasets.load_from_disk(self.path)
        except Exception as e:
            yield self._bad("unreadable_hf_dataset", detail=repr(e))
            return
        parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [("", ds)]
        for split, d in parts:
            for n, rec in enumerate(d):
                yield from self._record(rec, f"{self.rel}:{split}:{n}", n, None)


@dataclass
class ReadLog:
    """What reading reported besides documents: unreadable units counted per reason, the first
    `keep` of them (None: all), records seen and characters replaced by U+FFFD. One log may span
    many `read_documents` calls (a build's unit, all of `corpus classifier`'s input)."""

    keep: int | None = 20
    counts: Counter = field(default_factory=Counter)
    examples: list[BadUnit] = field(default_factory=list)
    records: int = 0
    replaced: int = 0

    def add(self, bad: BadUnit) -> None:
        self.counts[bad.reason] += 1
        if self.keep is None or len(self.examples) < self.keep:
            self.examples.append(bad)


def read_documents(paths: str | Sequence[str], source: SourceConfig, limits: LimitsConfig | None = None, *,
                   log: ReadLog | None = None, rel: str | Callable[[str], str] | None = None,
                   byte_range: tuple[int, int, int] | None = None) -> Iterator[Document]:
    """The documents of input files read as `source`, in order; what cannot be read goes to `log`
    (or is dropped unseen; `limits.strict` raises ReadError). The one loop over input files:
    the build, `corpus clean`, `corpus dedup`, `corpus classifier` and the CLI read through it.

    `paths` is one file (a str: read as it is, `byte_range` of it when given) or a list of
    files, directories and globs (`expand_paths`). `rel` names a file in document ids: a str
    for the one file, a function of the path for a list; default: the file's base name."""
    limits = limits or LimitsConfig()
    if isinstance(paths, str):
        files = [paths]
    else:
        if byte_range is not None:
            raise ValueError("byte_range is for one file")
        files = expand_paths(list(paths))
    for f in files:
        name = rel if isinstance(rel, str) else rel(f) if rel else os.path.basename(f)
        reader = FileReader(f, name, source, limits, byte_range)
        for item in reader:
            if isinstance(item, Document):
                yield item
            elif log is not None:
                log.add(item)
        if log is not None:
            log.records += reader.records
            log.replaced += reader.replaced


def split_oversize(text: str, cap: int) -> Iterator[str]:
    """Split a too-long text into pieces of at most `cap` chars, at paragraph/line/space boundaries
    (by index, so a 150 MB text is not copied once per piece)."""
    start, n = 0, len(text)
    while n - start > cap:
        cut = _cut_point(text, cap, start)
        yield text[start:cut]
        start = cut
    if start < n:
        yield text[start:] if start else text


def _cut_point(text: str, cap: int, start: int = 0) -> int:
    """Absolute index where the piece starting at `start` ends (at most `cap` chars long)."""
    for sep in ("\n\n", "\n", "。", ". ", " "):
        i = text.rfind(sep, start + cap // 2, start + cap)
        if i > start:
            return i + len(sep)
    return start + cap


_STRUCT = re.compile(r'[\[\]{}"]')


class _Extent:
    """Finds where a JSON value that starts with `{`, `[` or `"` ends, block after block, without
    parsing it: bracket depth outside strings, strings ended by an unescaped quote. A raw newline
    inside a string (never valid JSON) ends the value early as `damaged`."""

    def __init__(self) -> None:
        self.depth, self.in_str, self.esc, self.damaged = 0, False, False, False

    def feed(self, s: str, i: int) -> int | None:
        """Index in `s` just past the value's end, or None when it goes on after `s`."""
        n = len(s)
        while i < n:
            if self.in_str:
                if self.esc:
                    self.esc, i = False, i + 1
                    continue
                j = s.find('"', i)
                stop = n if j < 0 else j
                nl = s.find("\n", i, stop)
                if nl >= 0:
                    self.damaged = True
                    return nl
                if j < 0:
                    tail = n - len(s.rstrip("\\"))
                    self.esc = min(tail, n - i) % 2 == 1
                    return None
                k = j
                while k > i and s[k - 1] == "\\":
                    k -= 1
                if (j - k) % 2:
                    i = j + 1
                    continue
                self.in_str, i = False, j + 1
                if self.depth == 0:
                    return i
            else:
                m = _STRUCT.search(s, i)
                if m is None:
                    return None
                c, i = m.group(), m.end()
                if c == '"':
                    self.in_str = True
                elif c in "[{":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth <= 0:
                        self.damaged = self.depth < 0
                        return i
        return None


def _parses_as_element(decoder: json.JSONDecoder, buf: str, j: int, eof: bool, in_array: bool) -> bool:
    """A resync candidate: an object at buf[j] that parses (or may, once more is read) and is
    followed by what follows an array element."""
    try:
        obj, end = decoder.raw_decode(buf, j)
    except json.JSONDecodeError as e:
        return not eof and (e.msg.startswith("Unterminated string") or e.pos >= len(buf) - 16)
    except (RecursionError, ValueError):
        return False
    if not isinstance(obj, dict):
        return False
    while end < len(buf) and buf[end] in " \t\r\n":
        end += 1
    return end >= len(buf) or not in_array or buf[end] in ",]"


_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def drop_html_comments(chunks: Iterator[str]) -> Iterator[str]:
    """Markdown text without `<!-- ... -->` comments (one may span lines and chunks); fenced code
    blocks are kept as they are. A line that held only a comment is dropped whole."""
    pend: list[str] = []
    in_comment, fence = False, None
    for s in chunks:
        if "\n" not in s:
            pend.append(s)
            continue
        text = "".join(pend) + s
        k = text.rfind("\n")
        pend = [text[k + 1:]] if k + 1 < len(text) else []
        out = []
        for line in text[: k + 1].splitlines(keepends=True):
            line, in_comment, fence = _uncomment(line, in_comment, fence)
            out.append(line)
        yield "".join(out)
    if pend:
        line, _, _ = _uncomment("".join(pend), in_comment, fence)
        if line:
            yield line


def _uncomment(line: str, in_comment: bool, fence: str | None) -> tuple[str, bool, str | None]:
    if fence is not None:
        m = _FENCE.match(line)
        return line, False, (None if m and m.group(1) == fence else fence)
    if not in_comment:
        m = _FENCE.match(line)
        if m:
            return line, False, m.group(1)
    orig, out = line, ""
    while line:
        if in_comment:
            e = line.find("-->")
            if e < 0:
                line = ""
                break
            line, in_comment = line[e + 3:], False
        else:
            b = line.find("<!--")
            if b < 0:
                out += line
                break
            out, line, in_comment = out + line[:b], line[b + 4:], True
    if out != orig and not out.strip():
        out = ""  # the line was only a comment: drop it, newline and all
    return out, in_comment, fence


def _is_wudao(rec: Any, src: SourceConfig) -> bool:
    return (isinstance(rec, dict) and not src.text_key and not src.template and "content" in rec
            and "title" in rec and ("titleUkey" in rec or "uniqueKey" in rec))


def _not_regular(path: str) -> str:
    """'' for a regular file (or a symlink to one); else what it is (FIFO, device, socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"cannot stat: {e}"
    if stat.S_ISREG(mode):
        return ""
    for test, name in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "not a regular file"


def _has_magic(path: str, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _peek(stream: IO[bytes], n: int = 65536) -> bytes:
    return stream.read(n)


class _Limited(io.RawIOBase):
    """At most `n` bytes of a binary stream (one byte-range unit)."""

    def __init__(self, f: IO[bytes], n: int):
        self.f, self.left = f, n

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return data


class _Rewind(io.RawIOBase):
    """A stream that first returns an already-read head, then the rest of the underlying stream."""

    def __init__(self, head: bytes, stream: IO[bytes]):
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if self._head:
            if n < 0:
                out, self._head = self._head + self._stream.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._stream.read(n)

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
