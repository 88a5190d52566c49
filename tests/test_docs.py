"""The documentation holds together: a short README, relative links that resolve, every docs page reachable from the
README, and a matrix reference equal to what harness/docs.py renders from the schema now. (That the README's test
command is .ci/run's last line is checked in tests/test_env.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

from harness.docs import matrix_reference

LINK = re.compile(r"\[[^\]]*\]\((?:<([^>]+)>|([^)\s]+))(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _pages() -> list[Path]:
    docs, findings = sorted((REPO / "docs").glob("*.md")), sorted((REPO / "results").glob("*/FINDINGS.md"))
    return [REPO / "README.md", *docs, *findings]


def _links(page: Path) -> list[str]:
    """The targets of the page's markdown links, outside fenced code blocks."""
    return [a or b for a, b in LINK.findall(FENCE.sub("", page.read_text("utf-8")))]


def test_the_readme_is_short():
    lines = (REPO / "README.md").read_text("utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to a page in docs/"


def test_every_relative_link_resolves_to_a_file_of_the_repository():
    broken = []
    for page in _pages():
        for target in _links(page):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "links to no file:\n" + "\n".join(broken)


def test_the_link_check_reads_links_and_skips_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text('[a](x.md#top) [b](<y z.md>) [c](https://e.org) [d](w.md "title")\n```\n[e](not.md)\n```\n')
    assert _links(page) == ["x.md#top", "y z.md", "https://e.org", "w.md"]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / t.split("#", 1)[0]).resolve() for t in _links(REPO / "README.md")}
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_matrix_reference_is_current():
    committed = (REPO / "docs" / "matrix-reference.md").read_text("utf-8")
    assert committed == matrix_reference(), "regenerate: python -m harness.docs > docs/matrix-reference.md"


def test_the_matrix_reference_lists_every_key_of_the_schema():
    from harness.config import MatrixSpec, TuningSpec

    text = matrix_reference()
    for spec in (MatrixSpec, TuningSpec):
        assert f"## {spec.__name__}" in text
        assert all(f"| `{name}` |" in text for name in spec.model_fields)
    # a key without a description takes the comment on its line in config.py, pragmas dropped
    assert "| `suites` | `list[\"perplexity\" \\| \"task\" \\| \"benchmarks\" \\| \"safety\"]` | `null` | " \
           "None: every suite with data |" in text
    assert "| `tokens` | `int (> 0)` | required | non-padding training tokens every cell consumes, exactly |" in text
