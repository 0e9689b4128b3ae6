"""Entry point: `python chatglm_service_flask.py --help`."""

import sys

from glm.cli import main

if __name__ == "__main__":
    sys.exit(main())
