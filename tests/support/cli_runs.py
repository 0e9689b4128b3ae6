"""Start-ups of the service that fail, run from one process that imported the command line once.

`python -m tests.support.cli_runs` reads one JSON list of arguments a line; for each it forks, and the
child runs chatglm_service_flask.py as `python chatglm_service_flask.py ARGS` does (`__main__`, argv, the
exit status Python gives a SystemExit or an uncaught exception), its stdout and stderr going to files;
it answers one JSON line, {"returncode", "stdout", "stderr"}. The fork finds torch and the rest already
imported, which each fresh process otherwise spends most of its start-up on.
"""

import json
import os
import runpy
import signal
import sys
import tempfile
import traceback

import glm.cli  # noqa: F401  (what the entry point imports first: each fork finds it loaded)
from tests.support.server_process import ENTRY

# A run not over by then is killed (return code -SIGALRM), as a subprocess timeout would fail it.
RUN_SECONDS = 120


def exit_status(code: object) -> int:
    """The process's exit status for `sys.exit(code)`, as Python's own start-up code gives it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def entry_point(args: list[str]) -> int:
    sys.argv = [str(ENTRY), *args]
    try:
        runpy.run_path(str(ENTRY), run_name="__main__")
        return 0
    except SystemExit as exit:
        return exit_status(exit.code)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def run(args: list[str]) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            signal.alarm(RUN_SECONDS)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os._exit(entry_point(args))
        _, status = os.waitpid(pid, 0)
        texts = []
        for stream in (out, err):
            stream.seek(0)
            texts.append(stream.read().decode("utf-8", errors="replace"))
    return {"returncode": os.waitstatus_to_exitcode(status), "stdout": texts[0], "stderr": texts[1]}


def main() -> None:
    for line in sys.stdin:
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
