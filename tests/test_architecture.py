"""docs/architecture.md lists each module with one line, and that list matches the files."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def listed_paths() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("```", 2)[1]
    return [m.group(1) for line in block.splitlines() if (m := re.match(r"((?:cmcore|app)/\S+\.py)\s+\S", line))]


def module_files() -> set[str]:
    files = {p.relative_to(ROOT).as_posix() for package in ("cmcore", "app") for p in (ROOT / package).rglob("*.py")}
    return {f for f in files if Path(f).name not in ("__init__.py", "__main__.py") or f == "cmcore/data/__init__.py"}


def test_every_module_is_listed_once_and_every_listed_module_exists():
    listed = listed_paths()
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(set(listed) - module_files()) == [], "listed in docs/architecture.md but not in the tree"
    assert sorted(module_files() - set(listed)) == [], "in the tree but not in docs/architecture.md"
