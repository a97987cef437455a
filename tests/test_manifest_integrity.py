"""Issue 17: manifest.json is checked on read (plain shard names, its own checksum) and every
field describing the shards is checked by verify."""

import json
import shutil

import pytest

from shards.dataset import ShardDataset
from shards.manifest import EDITED, ManifestError, manifest_checksum, read_manifest, with_checksum
from shards.verify import is_warning, verify


@pytest.fixture()
def copy(small_build, tmp_path):
    out, _, _ = small_build
    dst = tmp_path / "b"
    shutil.copytree(out, dst, ignore=shutil.ignore_patterns(".work", ".lock"))
    return dst


def _load(d):
    return json.load(open(d / "manifest.json", encoding="utf-8"))


def _save(d, m, rehash=True):
    if rehash:
        m = with_checksum(m)
    (d / "manifest.json").write_text(json.dumps(m, ensure_ascii=False, indent=1), encoding="utf-8")


def test_fresh_build_has_checksum_and_verifies(copy):
    m = _load(copy)
    assert m["manifest_sha256"] == manifest_checksum(m)
    assert verify(str(copy)) == []


def test_hand_edit_is_named_checksum_mismatch(copy):
    m = _load(copy)
    m["splits"]["train"]["tokens"] += 1
    _save(copy, m, rehash=False)
    probs = verify(str(copy))
    assert any(EDITED in str(p) for p in probs)
    with pytest.raises(ManifestError, match="checksum mismatch"):
        ShardDataset(str(copy))


def test_old_manifest_without_checksum_is_a_warning(copy):
    m = _load(copy)
    del m["manifest_sha256"]
    _save(copy, m, rehash=False)
    probs = verify(str(copy))
    assert probs and all(is_warning(p) for p in probs)
    read_manifest(str(copy))  # readable, no crash


def _edit(m, field):
    sh = m["splits"]["train"]["shards"][0]
    if field == "rows":
        sh["rows"] += 1
    elif field == "tokens":
        sh["tokens"] -= 1
    elif field == "pad_id":
        m["pad_id"] = m["tokenizer"]["vocab_size"] + 5
    elif field == "bos_id":
        m["bos_id"] = (m["bos_id"] + 7) % m["tokenizer"]["vocab_size"]
    elif field == "eos_id":
        m["eos_id"] = (m["eos_id"] + 7) % m["tokenizer"]["vocab_size"]
    elif field == "format_version":
        m["format_version"] = 99
    elif field == "packing.tail":
        m["packing"]["tail"] = "drop"
    elif field == "sources":
        del m["sources"]
    elif field == "dtype":
        m["dtype"] = "uint32"


@pytest.mark.parametrize("field", ["rows", "tokens", "pad_id", "bos_id", "eos_id", "format_version",
                                   "packing.tail", "sources", "dtype"])
def test_each_edited_field_is_named(copy, field):
    m = _load(copy)
    _edit(m, field)
    _save(copy, m)  # even with a recomputed checksum
    probs = verify(str(copy))
    assert probs, field
    assert not any(is_warning(p) for p in probs)
    assert any(field in str(p) for p in probs), [str(p) for p in probs]


@pytest.mark.parametrize("name", ["../x", "train/../../x", "/etc/passwd", "a/b/c", "a\x00b", ".."])
def test_unsafe_shard_names_refused_everywhere(copy, tmp_path, name):
    from shards.stats import collect, sample_rows

    outside = tmp_path / "x"
    for ext in ("bin", "idx", "bnd"):  # a readable target outside the build, which must stay unread
        shutil.copy(copy / (_load(copy)["splits"]["train"]["shards"][0]["name"] + "." + ext), f"{outside}.{ext}")
    m = _load(copy)
    m["splits"]["train"]["shards"][0]["name"] = name
    _save(copy, m)
    probs = verify(str(copy))
    assert len(probs) == 1 and "not a plain file name" in str(probs[0])
    for fn in (lambda: ShardDataset(str(copy)), lambda: collect(str(copy)),
               lambda: sample_rows(str(copy), 3)):
        with pytest.raises(ManifestError, match="not a plain file name") as ei:
            fn()
        assert isinstance(ei.value, ValueError) and "\n" not in str(ei.value)


def test_int32_for_a_small_vocabulary_is_named(copy):
    """A valid token dtype that is not the one the vocabulary gets (Megatron's rule) is a dtype problem."""
    m = _load(copy)
    m["dtype"] = "int32"
    _save(copy, m)
    probs = verify(str(copy))
    assert probs and any("dtype" in str(p) and "int32" in str(p) for p in probs), [str(p) for p in probs]


def test_tokenizer_copy_is_checked(copy):
    """The tokenizer the build carries: a changed byte or a missing copy names the file; a file
    name leading out of the build directory is refused before anything is read."""
    from shards.stats import sample_rows

    m = _load(copy)
    tok_file = copy / m["tokenizer"]["file"]
    data = bytearray(tok_file.read_bytes())
    data[100] ^= 1
    tok_file.write_bytes(bytes(data))
    probs = verify(str(copy))
    assert len(probs) == 1 and str(tok_file) in str(probs[0]) and "sha256 mismatch" in str(probs[0])
    with pytest.raises(Exception, match="sha256 differs"):
        sample_rows(str(copy), 2)
    tok_file.unlink()
    assert "missing" in str(verify(str(copy))[0])
    m["tokenizer"]["files"] = {"../../x.model": m["tokenizer"]["sha256"]}
    m["tokenizer"]["file"] = "../../x.model"
    _save(copy, m)
    with pytest.raises(ManifestError, match="tokenizer file '../../x.model' is not a plain file name"):
        ShardDataset(str(copy))
