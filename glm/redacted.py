"""Unexpected exceptions in the log by type and stack frames only.

An exception's message may quote what a request sent (a prompt, a header), and nothing of a
request's content is logged without --log-prompts; the frames say where it happened.
"""

import logging
import traceback


def log_unexpected(logger: logging.Logger, where: str, error: BaseException) -> None:
    frames = "".join(traceback.format_tb(error.__traceback__))
    logger.error("unexpected %s %s (its message is not logged)\n%s", type(error).__name__, where, frames)
