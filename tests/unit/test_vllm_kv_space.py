"""--engine vllm's KV space: the flag's, VLLM_CPU_KVCACHE_SPACE's on the CPU, or a default that fits
the machine, so that vLLM's CPU build does not ask for 90% of its memory and refuse to start."""

import pytest

from glm.engine.vllm_engine import CPU_KV_ENV, GiB, default_cpu_kv_bytes, kv_cache_bytes
from glm.startup import StartupError


@pytest.mark.parametrize(
    ("available", "expected"),
    [(2 * GiB, GiB // 2), (10 * GiB, 10 * GiB // 4), (16 * GiB, 4 * GiB), (512 * GiB, 4 * GiB)],
)
def test_the_cpu_default_is_a_quarter_of_the_available_memory_at_most_4_gib(available, expected):
    assert default_cpu_kv_bytes(available) == expected


@pytest.mark.parametrize("cpu", [True, False])
def test_the_flag_sets_the_space_on_either_device(cpu):
    assert kv_cache_bytes(2.5, cpu, {}) == int(2.5 * GiB)


def test_a_gpu_without_the_flag_leaves_it_to_gpu_memory_utilization():
    assert kv_cache_bytes(None, False, {CPU_KV_ENV: "3"}) is None
    assert kv_cache_bytes(1.0, False, {CPU_KV_ENV: "3"}) == GiB


def test_the_cpu_takes_vllms_variable_when_the_flag_is_not_given():
    assert kv_cache_bytes(None, True, {CPU_KV_ENV: "3"}) == 3 * GiB


def test_the_cpu_default_applies_without_flag_or_variable():
    for environ in ({}, {CPU_KV_ENV: ""}):
        assert 0 < kv_cache_bytes(None, True, environ) <= 4 * GiB


@pytest.mark.parametrize(
    ("gib", "variable", "message"),
    [(2.0, "3", "--kv-cache-gib and VLLM_CPU_KVCACHE_SPACE=3"), (None, "lots", "not a whole number of GiB")],
)
def test_what_vllm_would_read_otherwise_is_refused_at_start(gib, variable, message):
    with pytest.raises(StartupError, match=message):
        kv_cache_bytes(gib, True, {CPU_KV_ENV: variable})
