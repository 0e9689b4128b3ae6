"""How the compute threads wait for each other, set before torch loads its OpenMP runtime.

torch's parallel loops (and the kernels in glm/quant/kernels) run on libgomp, whose threads spin
at every barrier for up to 300,000 rounds before they sleep: milliseconds where one round's `pause`
costs ~140 cycles (recent Xeons). Beside any other busy process that is a collapse: the thread that
spins holds a core while the thread it waits for has none, at each of a decode step's barriers.
Measured on demo beside one busy loop, every shorter spin did better, and sleeping at once (the
passive policy) did best, beside a neighbour and, with the decode step's few parallel regions, as
well as any spin alone (bench/RESULTS.md, "Beside one busy process"; the figures are in the
commit that set this).

libgomp reads its settings once, when it loads: this must run before `import torch`, which the
entry script does. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT stands.
"""

import os
import sys
from collections.abc import MutableMapping

WAIT_POLICY = "PASSIVE"
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def configure(environ: MutableMapping[str, str] = os.environ) -> None:
    """Threads that sleep while they wait, unless the environment already says how they wait, or
    torch is already loaded (a process that imported it first, as tests' forks of an imported
    glm.cli do), where a setting would claim what libgomp never read."""
    if "torch" not in sys.modules and not any(name in environ for name in USER_SETTINGS):
        environ["OMP_WAIT_POLICY"] = WAIT_POLICY
