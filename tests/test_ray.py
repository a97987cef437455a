"""The same build on Ray (a local instance with 2 CPUs) is byte-identical to the local run;
a task whose worker process dies is retried."""

import os

import pytest

from conftest import LLAMA_TOKENIZER, build_files
from corpus.build import build
from corpus.executor import LocalExecutor, RayExecutor
from corpus.recipe import Recipe
from shards.verify import verify


@pytest.fixture(scope="module")
def ray_executor():
    import ray

    ex = RayExecutor(num_cpus=2)
    yield ex
    ray.shutdown()




def _die_once(marker: str) -> int:
    """Kills its own worker process the first time it runs (the marker file remembers)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return os.getpid()


@pytest.mark.slow
def test_ray_build_is_byte_identical_to_local(shared, tmp_path, ray_executor):
    r = Recipe.model_validate({
        "sources": [{"name": "law", "kind": "domain", "paths": [str(shared / "domain/lawrefbook_zh/宪法")], "format": "md"},
                    {"name": "cail", "kind": "domain", "paths": [str(shared / "domain/hf_cail2018_zh")], "text_key": "fact"},
                    {"name": "c4", "paths": [str(shared / "general/c4_en")], "weight": None},
                    {"name": "pile", "paths": [str(shared / "general/pile")]}],
        "stages": [{"name": "normalize"}, {"name": "min_length"}, {"name": "exact_dedup"}, {"name": "minhash_dedup"}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 512}, "output": {"rows_per_shard": 64}})
    build(r, str(tmp_path / "local"), LocalExecutor(1))
    build(r, str(tmp_path / "ray"), ray_executor)
    a, b = build_files(tmp_path / "local"), build_files(tmp_path / "ray")
    assert a.keys() == b.keys() and len(a) > 8
    for k in a:
        assert a[k] == b[k], k
    assert verify(str(tmp_path / "ray")) == []


def test_ray_retries_a_task_whose_worker_died(tmp_path, ray_executor):
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    markers = [str(tmp_path / f"m{i}") for i in range(3)]
    pids = list(ray_executor.map(_die_once, markers))
    assert len(pids) == 3 and all(os.path.exists(m) for m in markers)
