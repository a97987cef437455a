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
from collections.abc import Iterator
from typing import IO, Any

import zstandard

from .document import BadUnit, Document
from .recipe import LimitsConfig, SourceConfig, is_symlink_loop

TEXT_KEYS = ("text", "content", "raw_content", "maintext", "article_text", "fact", "body", "document")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CHUNK = 1 << 20


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


_STREAM_ERRORS = (EOFError, OSError, zstandard.ZstdError, lzma.LZMAError, ValueError)


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Split a binary stream on b'\\n' only (U+2028 inside JSON strings must not split a line)."""
    rest = b""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


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


def clean_text(text: str) -> str:
    """CRLF/CR -> LF and removal of NUL and other C0 control characters (tabs and newlines kept)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CTRL.sub("", text)


def looks_binary(sample: bytes) -> bool:
    """True when a (decompressed) sample is not text: many NULs or control bytes."""
    if not sample:
        return False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    ctrl = sum(1 for b in sample[:4096] if b < 9 or 13 < b < 32)
    return ctrl / min(len(sample), 4096) > 0.10


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

    # -- helpers -------------------------------------------------------------------------
    def _bad(self, reason: str, line: int | None = None, offset: int | None = None, detail: str = "") -> BadUnit:
        bad = BadUnit(self.rel, reason, line, offset, detail)
        if self.limits.strict:
            raise ReadError(f"{self.path}: {reason} (line {line}, offset {offset}) {detail[:200]}")
        return bad

    def _doc(self, key: str, text: str, meta: dict[str, Any] | None = None) -> Iterator[Document | BadUnit]:
        """Emit a document, enforcing the size cap (split into pieces, or drop with a reason)."""
        self.records += 1
        text = clean_text(text)
        doc_id = f"{self.src.name}/{key}"
        meta = dict(meta or {})
        meta["file"] = self.rel
        meta["source_kind"] = self.src.kind  # e.g. the domain classifier passes domain sources through
        if self.src.languages:
            meta["languages_keep"] = self.src.languages  # the language stage's per-source keep list
        cap = self.limits.max_doc_chars
        if len(text) <= cap:
            yield Document(doc_id, text, self.src.name, meta)
            return
        if self.limits.oversize == "drop":
            yield self._bad("oversize_document", detail=f"{doc_id}: {len(text)} chars > max_doc_chars={cap}")
            return
        for k, piece in enumerate(split_oversize(text, cap)):
            yield Document(f"{doc_id}#{k}", piece, self.src.name, {**meta, "oversize_piece": k})

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
        if looks_binary(head):
            yield self._bad("binary_content", offset=0, detail="more than 10% control bytes in the first 4 KiB")
            return
        enc = self.src.encoding or detect_encoding(head)
        kind = fmt if fmt != "auto" else self._sniff(head, enc)
        if self.byte_range is not None:
            with stream:
                yield from self._read_jsonl_range(enc)
            return
        try:
            with stream:
                if kind in ("jsonl",):
                    yield from self._read_jsonl(_Rewind(head, stream), enc)
                elif kind in ("json", "wudao"):
                    yield from self._read_json(_Rewind(head, stream), enc)
                elif kind == "csv":
                    yield from self._read_csv(_Rewind(head, stream), enc)
                else:
                    yield from self._read_text(_Rewind(head, stream), enc)
        except _STREAM_ERRORS as e:
            yield self._bad("truncated_or_corrupt_stream", detail=f"{type(e).__name__}: {e}")

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
        return self.src.format == "jsonl" or self._sniff(head, enc) == "jsonl"

    def _read_jsonl_range(self, enc: str) -> Iterator[Document | BadUnit]:
        start, end, first_line = self.byte_range  # type: ignore[misc]
        with open(self.path, "rb") as f:
            f.seek(start)
            yield from self._read_jsonl(_Limited(f, end - start), enc, first_line, start)

    def _read_jsonl(self, stream: IO[bytes], enc: str, first_line: int = 1,
                    offset: int = 0) -> Iterator[Document | BadUnit]:
        for lineno, raw in enumerate(iter_lines(stream), first_line):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            try:
                line = raw.decode(enc if enc != "utf-8-sig" or lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                try:
                    line = raw.decode("gb18030")
                except UnicodeDecodeError as e:
                    yield self._bad("undecodable_bytes", lineno, start, str(e))
                    continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                yield self._bad("malformed_json", lineno, start, f"{e.msg} at column {e.colno}: {line[:80]!r}")
                continue
            except (ValueError, RecursionError) as e:  # e.g. int max str digits, nesting too deep
                yield self._bad("malformed_json", lineno, start, f"{type(e).__name__}: {str(e)[:120]}")
                continue
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
        if isinstance(rec, dict) and self.src.id_key and rec.get(self.src.id_key) is not None:
            key = f"{self.rel}:{rec[self.src.id_key]}"
        yield from self._doc(key, text, meta)

    # -- JSON documents and arrays (WuDao) -----------------------------------------------
    def _read_json(self, stream: IO[bytes], enc: str) -> Iterator[Document | BadUnit]:
        """Stream a JSON array element by element (WuDao), or read a single JSON object."""
        dec = codecs.getincrementaldecoder(enc)(errors="replace")
        decoder = json.JSONDecoder()
        buf, pos, base, eof = "", 0, 0, False  # base: chars consumed before buf
        in_array, index, max_buf = None, 0, max(4 * self.limits.max_doc_chars, 64 << 20)

        def fill() -> bool:
            nonlocal buf, pos, base, eof
            chunk = stream.read(_CHUNK)
            if not chunk:
                eof = True
                buf += dec.decode(b"", final=True)
                return False
            buf = buf[pos:] + dec.decode(chunk)
            base += pos
            pos = 0
            return True

        fill()
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,\ufeff":
                pos += 1
            if pos >= len(buf):
                if eof or not fill():
                    if eof and pos >= len(buf):
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
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as e:
                if not eof and len(buf) - pos < max_buf:
                    fill()
                    continue
                # resync at the next element boundary; none left means the file was cut off
                m = re.compile(r"\}\s*,\s*\{").search(buf, e.pos) if in_array else None
                reason = "malformed_json" if m else "truncated_json"
                yield self._bad(reason, offset=base + pos, detail=f"element {index}: {e.msg}")
                if not m:
                    break
                pos = m.start() + m.group(0).rindex("{")
                index += 1
                continue
            except (RecursionError, ValueError) as e:  # nesting too deep, int max str digits
                yield self._bad("malformed_json", offset=base + pos, detail=f"element {index}: {type(e).__name__}")
                break
            if not in_array and isinstance(obj, list):  # pragma: no cover - defensive
                in_array = True
            key = f"{self.rel}:{index}" if in_array else self.rel
            yield from self._record(obj, key, None, base + pos)
            index += 1
            pos = end
            if not in_array:
                # a JSON document that is one object: anything after it is more JSON values
                continue

    # -- CSV -----------------------------------------------------------------------------
    def _read_csv(self, stream: IO[bytes], enc: str) -> Iterator[Document | BadUnit]:
        text = io.TextIOWrapper(stream, encoding=enc, errors="replace", newline="")  # type: ignore[arg-type]
        reader = csv.DictReader(text)
        for rowno, row in enumerate(reader, 2):
            yield from self._record(row, f"{self.rel}:{rowno}", rowno, None)

    # -- plain text and markdown ---------------------------------------------------------
    def _read_text(self, stream: IO[bytes], enc: str) -> Iterator[Document | BadUnit]:
        dec = codecs.getincrementaldecoder(enc)(errors="replace")
        mode = "file" if self.src.format == "md" else self.src.txt_mode
        replaced = 0

        def chunks() -> Iterator[str]:
            nonlocal replaced
            while True:
                b = stream.read(_CHUNK)
                final = not b
                s = dec.decode(b, final=final)
                replaced += s.count("\ufffd")
                if s:
                    yield s
                if final:
                    return

        if mode == "file":
            # bounded: pieces of at most max_doc_chars are emitted as the file streams in
            cap, acc, piece, total, dropped = self.limits.max_doc_chars, "", 0, 0, False

            def piece_doc(text: str, k: int) -> Document:
                return Document(f"{self.src.name}/{self.rel}#{k}", clean_text(text), self.src.name,
                                {"file": self.rel, "oversize_piece": k})

            for s in chunks():
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
            sep = "\n\n" if mode == "paragraph" else "\n"
            acc, n, lineno = "", 0, 1
            for s in chunks():
                acc += s.replace("\r\n", "\n")
                parts = re.split(r"\n\s*\n", acc) if mode == "paragraph" else acc.split(sep)
                acc = parts.pop()
                for p in parts:
                    if p.strip():
                        yield from self._doc(f"{self.rel}:{n}", p, {"line": lineno})
                        n += 1
                    lineno += p.count("\n") + (2 if mode == "paragraph" else 1)
            if acc.strip():
                yield from self._doc(f"{self.rel}:{n}", acc, {"line": lineno})
        if replaced:
            yield self._bad("undecodable_bytes", detail=f"{replaced} byte sequences not valid {enc} were replaced by U+FFFD")

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


def split_oversize(text: str, cap: int) -> Iterator[str]:
    """Split a too-long text into pieces of at most `cap` chars, at paragraph/line/space boundaries."""
    while len(text) > cap:
        cut = _cut_point(text, cap)
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


def _cut_point(text: str, cap: int) -> int:
    for sep in ("\n\n", "\n", "。", ". ", " "):
        i = text.rfind(sep, cap // 2, cap)
        if i > 0:
            return i + len(sep)
    return cap


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
