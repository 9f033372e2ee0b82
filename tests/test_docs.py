"""The README and the documentation site cannot drift from the CLI, and their relative links resolve."""

import re
from pathlib import Path

import click

from faststeal.cli import main

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _commands(group, prefix="faststeal"):
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        yield full
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, full)


def _command_section(text):
    start = text.index("## Commands")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_command_list_names_every_command():
    section = _command_section((ROOT / "README.md").read_text())
    missing = [c for c in _commands(main) if f"`{c}`" not in section and f"`{c.split(' ', 1)[1]}`" not in section]
    assert not missing, f"README's command list misses {missing}"


def test_cli_reference_is_generated_from_the_whole_cli():
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert "::: mkdocs-click" in page
    assert ":module: faststeal.cli" in page and ":command: main" in page
    assert ":prog_name: faststeal" in page
    assert ":list_subcommands: true" in page      # nested groups (keys add, ...) are documented in full
    config = (ROOT / "mkdocs.yml").read_text()
    assert "reference/cli.md" in config and "mkdocs-click" in config


def test_ci_builds_the_site_strictly():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "mkdocs build --strict" in ci and ".[docs]" in ci


def _markdown_files():
    yield ROOT / "README.md"
    yield ROOT / "CHANGELOG.md"
    yield from sorted((ROOT / "docs").rglob("*.md"))


def test_relative_links_point_to_existing_files():
    broken = []
    for md in _markdown_files():
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if not (md.parent / path).exists():
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_short_and_names_the_test_command():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "python -m pytest" in text
    head = "\n".join(text.splitlines()[:60])
    assert "31.24 ± 2.36" in head and "26.58 ± 2.58" in head and "11.72" in head
