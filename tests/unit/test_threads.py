"""The entry script sets how compute threads wait before torch loads libgomp, which reads it once."""

import os
import subprocess
import sys

from glm.threads import WAIT_POLICY
from tests.support.server_process import ENTRY, ROOT

# Runs the entry script as `python chatglm_service_flask.py --help` does, and prints the settings
# as they stand when torch is first imported.
PROBE = f"""
import importlib.abc, os, runpy, sys
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch":
            print("at torch:", os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"), flush=True)
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, Probe())
sys.argv = [{str(ENTRY)!r}, "--help"]
runpy.run_path({str(ENTRY)!r}, run_name="__main__")
"""


def torch_sees(**settings: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**env, **settings}, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("at torch:"))


def test_the_wait_policy_is_set_before_torch_loads():
    assert torch_sees() == f"at torch: None {WAIT_POLICY}"


def test_a_users_own_wait_policy_stands():
    assert torch_sees(OMP_WAIT_POLICY="ACTIVE") == "at torch: None ACTIVE"
    assert torch_sees(GOMP_SPINCOUNT="50") == "at torch: 50 None"
