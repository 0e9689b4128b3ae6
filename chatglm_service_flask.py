"""Entry point: `python chatglm_service_flask.py --help`."""

import sys

if __name__ == "__main__":
    from glm import threads

    threads.configure()
    # Imported here, not above: vLLM's worker processes start by importing this file, and must not
    # import Flask, whose context proxies raise where vLLM's start-up scans every module's globals.
    from glm.cli import main

    sys.exit(main())
