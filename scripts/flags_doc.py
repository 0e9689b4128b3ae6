"""docs/flags.md, rendered from the command line's own parser: `make docs` writes it, tests/unit/test_docs.py checks it.

One table row per option: its names, its default, its choices and its help, with argparse's `%(default)s`
expanded by the parser's own formatter. A help text that ends "(default: ...)" gives the default column its
words; a path under the user's home is written as it is spelled in the help, so the file is the same on every
machine.
"""

import argparse
import copy
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADING = """# Flags

Generated from the parser in `glm/cli.py` by `make docs` (`scripts/flags_doc.py`): edit the help texts
there, not this file. `python chatglm_service_flask.py --help` prints the same; `make run ARGS="..."`
passes flags through.
"""

TRAILING_DEFAULT = re.compile(r"\s*\(default: (?P<default>.*)\)$", re.DOTALL)


def portable(value: object) -> object:
    """The default as the docs spell it: the cache folder by its environment variable, not this machine's path."""
    from glm.cli import DEFAULT_CACHE

    if value == DEFAULT_CACHE:
        return "${XDG_CACHE_HOME:-~/.cache}/chatglm-service"
    return value


def cell(text: str) -> str:
    """Text that stays inside one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def default_of(action: argparse.Action, help_text: str) -> tuple[str, str]:
    """The default column and the help text without the "(default: ...)" it came from, if it had one."""
    found = TRAILING_DEFAULT.search(help_text)
    if found:
        return found["default"], help_text[: found.start()]
    if action.default is False:
        return "off", help_text
    if action.default in (None, []):
        return "none", help_text
    return str(portable(action.default)), help_text


def row(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    """One option as a table row: names, default, choices, help."""
    shown = copy.copy(action)
    shown.default = portable(action.default)
    default, help_text = default_of(shown, formatter._expand_help(shown) if action.help else "")
    names = ", ".join(f"`{name}`" for name in action.option_strings)
    choices = ", ".join(f"`{choice}`" for choice in action.choices) if action.choices else ""
    return f"| {names} | {cell(default)} | {choices} | {cell(help_text)} |"


def markdown() -> str:
    """docs/flags.md: a heading, then one table per group of options."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from glm.cli import parser

    p = parser()
    formatter = p._get_formatter()
    parts = [HEADING]
    for group in p._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.default is not argparse.SUPPRESS]
        if not actions:
            continue
        title = "Options" if group.title == "options" else group.title
        parts.append(f"\n## {title}\n\n| flag | default | choices | meaning |\n|---|---|---|---|\n")
        parts.extend(row(formatter, action) + "\n" for action in actions)
    return "".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
