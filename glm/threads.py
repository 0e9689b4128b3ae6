"""How the compute threads wait for each other, set before torch loads its OpenMP runtime.

torch's parallel loops (and the kernels in glm/quant/kernels) run on libgomp, whose threads spin
at every barrier for GOMP_SPINCOUNT rounds before they sleep: 300,000 rounds by default, which is
milliseconds where one spin round's `pause` costs ~140 cycles (recent Xeons). With the cores to
itself that is the fastest way to wait. Beside one other busy process it is a collapse: the thread
that spins holds a core while the thread it waits for has none, at each of the hundreds of
barriers of a decode step. A short spin keeps most of the speed alone and falls back to sleeping
under contention (bench/RESULTS.md, "Beside one busy process").

libgomp reads its settings once, when it loads: this must run before `import torch`, which the
entry script does. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT stands.
"""

import os
import sys
from collections.abc import MutableMapping

SPIN_ROUNDS = "1000"
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def configure(environ: MutableMapping[str, str] = os.environ) -> None:
    """The short spin, unless the environment already says how threads wait, or torch is already
    loaded (a process that imported it first, as tests' forks of an imported glm.cli do), where a
    setting would claim what libgomp never read."""
    if "torch" not in sys.modules and not any(name in environ for name in USER_SETTINGS):
        environ["GOMP_SPINCOUNT"] = SPIN_ROUNDS
