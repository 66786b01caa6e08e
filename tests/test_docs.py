"""The docs speak to users: a short README, links that resolve, every result file referenced, no word of how the
project was organised."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)\)")
WORD = "ses" + "sion"  # spelled apart, so that searching the tree for the word finds only pytest's fixture scope


def tracked() -> list[str]:
    found = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    return found.stdout.split() if found.returncode == 0 else []


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
    assert len((ROOT / "docs" / "DESIGN.md").read_text().splitlines()) <= 250


def test_every_relative_link_resolves():
    broken = [f"{doc.name}: {target}" for doc in DOCS for target in LINK.findall(doc.read_text())
              if "://" not in target and not (doc.parent / target).exists()]
    assert not broken


def test_every_result_file_is_referenced_from_the_results_doc():
    text = (ROOT / "docs" / "results.md").read_text()
    results = ROOT / "benchmarks" / "results"
    files = [p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file()]
    assert len(files) <= 64
    assert [f for f in files if f"results/{f})" not in text] == []


def test_no_file_speaks_of_how_the_work_was_organised():
    paths = tracked()
    assert [p for p in paths if WORD in p.lower()] == []
    for path in paths:
        file = ROOT / path
        if file.suffix in {".py", ".md", ".yaml", ".json", ".sh", ".toml", ".ipynb", ".csv", ""} and file.is_file():
            text = file.read_text(errors="ignore").replace(f'scope="{WORD}"', "")
            assert not re.search(rf"\b{WORD}\b", text, re.IGNORECASE), path
