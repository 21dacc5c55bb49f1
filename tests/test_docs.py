"""What the code and tests cite exists in ``docs/``.

* every ``docs/<page>.md`` named in the package, tests, benchmarks, recipes or README
  exists, and every ``§N`` / ``§N.M`` after it is a numbered heading of that page;
* every link between the pages points at an existing page and heading anchor;
* every property number a test is tagged with (``# P8``) is in the table of
  docs/pruning_pitfalls.md §9, and every test that table names exists.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CITING = ["espnet_pruning", "tests", "bench", "egs2"]
SUFFIXES = {".py", ".sh", ".yaml", ".md"}

CITATION = re.compile(r"docs/([a-z_]+\.md)(?:\s*§(\d+(?:\.\d+)*))?")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.M)
SECTION_NUMBER = re.compile(r"(\d+(?:\.\d+)*)\.?\s")
LINK = re.compile(r"\]\(([a-z_]+\.md)(?:#([^)]+))?\)")
SAME_PAGE_LINK = re.compile(r"\]\(#([^)]+)\)")
PROPERTY_TAG = re.compile(r"\bP(\d+)(?:[a-z]|\b)")
PROPERTY_ROW = re.compile(r"^\| P(\d+) \|(.*)$", re.M)
ANY_ROW = re.compile(r"^\| ([PE]\d+) \|(.*)$", re.M)
TEST_REF = re.compile(r"`(?:([\w/]+\.py))?(?:::(\w+))?`")


def _citing_files():
    files = [ROOT / "README.md"]
    for top in CITING:
        files += [p for p in sorted((ROOT / top).rglob("*")) if p.suffix in SUFFIXES]
    return [p for p in files if p.is_file()]


def _citations():
    found = []
    for path in _citing_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in CITATION.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", m.group(1), m.group(2)))
    return found


def _section_numbers(page: Path):
    numbers = set()
    for _, title in HEADING.findall(page.read_text(encoding="utf-8")):
        m = SECTION_NUMBER.match(title + " ")
        if m:
            numbers.add(m.group(1))
    return numbers


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces → hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


CITATIONS = _citations()


def test_the_code_cites_the_docs():
    pages = {page for _, page, _ in CITATIONS}
    assert {"pruning_pitfalls.md", "methods.md"} <= pages


@pytest.mark.parametrize(
    "where, page, section", CITATIONS, ids=[c[0] for c in CITATIONS]
)
def test_cited_page_and_section_exist(where, page, section):
    path = DOCS / page
    assert path.is_file(), f"{where}: docs/{page} does not exist"
    if section is not None:
        assert section in _section_numbers(path), (
            f"{where}: docs/{page} has no section §{section} "
            f"(numbered headings: {sorted(_section_numbers(path))})"
        )


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_links_between_pages_resolve(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    links = LINK.findall(text) + [(page, a) for a in SAME_PAGE_LINK.findall(text)]
    for target, anchor in links:
        path = DOCS / target
        assert path.is_file(), f"docs/{page}: link to missing {target}"
        if anchor:
            titles = HEADING.findall(path.read_text(encoding="utf-8"))
            anchors = {_anchor(title) for _, title in titles}
            assert anchor in anchors, f"docs/{page}: no heading #{anchor} in {target}"


def _property_table():
    text = (DOCS / "pruning_pitfalls.md").read_text(encoding="utf-8")
    return {int(n): row for n, row in PROPERTY_ROW.findall(text)}


def test_property_tags_of_tests_are_documented():
    documented = _property_table()
    assert sorted(documented) == list(range(1, 20))
    tagged = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "# P" in line or line.lstrip().startswith('"""P'):
                for n in PROPERTY_TAG.findall(line):
                    tagged.setdefault(int(n), []).append(path.name)
    assert tagged, "no test is tagged with a property number"
    missing = sorted(set(tagged) - set(documented))
    assert not missing, f"tests tag properties not in the table: {missing}"


def test_tests_named_in_the_property_tables_exist():
    text = (DOCS / "pruning_pitfalls.md").read_text(encoding="utf-8")
    rows = ANY_ROW.findall(text)
    assert len(rows) > 19
    for number, row in rows:
        path = None
        for file, name in TEST_REF.findall(row):
            if file:
                path = ROOT / "tests" / file
                assert path.is_file(), f"{number}: tests/{file} does not exist"
            if name:
                assert path is not None, f"{number}: ::{name} without a file"
                assert f"def {name}(" in path.read_text(
                    encoding="utf-8"
                ), f"{number}: no test {name} in {path.relative_to(ROOT)}"
