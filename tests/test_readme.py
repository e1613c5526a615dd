"""The README and docs/ pages: their Python examples run as written, and their relative links resolve.

The Python blocks of README.md run first, in order, then those of each docs/*.md page, all in one working
directory (the docs' examples load the tokenizer the README's quick start saves). Shell commands are run by
tests/test_documented_commands.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
#: Every markdown page whose links are checked.
PAGES = [README, *DOC_PAGES, ROOT / "recipes" / "README.md", ROOT / "CONTRIBUTING.md"]
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def test_readme_and_docs_python_blocks_run_in_order(tmp_path, monkeypatch):
    assert len(python_blocks(README)) >= 3, "README.md shows the quick start, own-data and serving examples"
    # The examples write relative paths (later blocks read what earlier ones saved).
    monkeypatch.chdir(tmp_path)
    for page in [README, *DOC_PAGES]:
        for index, block in enumerate(python_blocks(page)):
            name = f"{page.relative_to(ROOT)}[python block {index}]"
            exec(compile(block, name, "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "my-catalogue-tokenizer" / "sid_table.json").is_file()
    assert (tmp_path / "sid_grammar.ebnf").is_file()  # docs/serving.md's vLLM blocks start from it


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    found: set[str] = set()
    text = FENCE.sub("", page.read_text(encoding="utf-8"))  # a `# comment` in a code block is no heading
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def test_relative_link_finder_and_anchors():
    assert "quick-start" in anchors(README) and "demo-output" in anchors(README)
    assert "docs/benchmarks.md#quality-against-what-users-try-first" in relative_links(README)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / unquote(path)).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no file {target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_is_short_and_every_doc_page_is_linked_from_it():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 400, "the README is read in five minutes: move details to docs/"
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in relative_links(README)}
    assert not [page.name for page in DOC_PAGES if page.resolve() not in linked]
