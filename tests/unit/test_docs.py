"""The docs: docs/flags.md is what the parser says, the README links every page of docs/, and every
relative link in README.md and docs/*.md leads to a file (and, with a #fragment, to a heading in it)."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)


def flags_doc():
    spec = importlib.util.spec_from_file_location("flags_doc", ROOT / "scripts" / "flags_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose(path: Path) -> str:
    """The file without its code blocks, where neither links nor headings count."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def links(path: Path) -> list[str]:
    """The relative link targets in a markdown file."""
    targets = LINK.findall(CODE.sub("", prose(path)))
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def anchors(path: Path) -> set[str]:
    """The heading ids GitHub gives a markdown file: lower case, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_flags_doc_is_what_the_parser_says():
    expected = flags_doc().markdown()
    actual = (ROOT / "docs" / "flags.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/flags.md is out of date with glm/cli.py: run `make docs`"


def test_the_readme_links_every_page_of_docs():
    linked = {(README.parent / target.split("#")[0]).resolve() for target in links(README)}
    assert DOCS, "docs/ has no pages"
    missing = [path.name for path in DOCS if path.resolve() not in linked]
    assert missing == [], f"README.md's Documentation list does not link {missing}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(path):
    broken = []
    for target in links(path):
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        missing_heading = bool(fragment) and linked.suffix == ".md" and fragment not in anchors(linked)
        if not linked.exists() or missing_heading:
            broken.append(target)
    assert broken == [], f"{path.name}: links to no file or heading: {broken}"
