"""The docs stay true: every setting is in the README's configuration table."""

from __future__ import annotations

from pathlib import Path

from mtai.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        env_name = f"MTAI_{name.upper()}"
        aliases = getattr(field.validation_alias, "choices", [])
        assert env_name in readme or any(str(a) in readme for a in aliases), env_name


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text()[:400]
    assert "make run" in head
    assert "make test" in head


def test_example_models_file_is_valid() -> None:
    import tomllib

    from mtai.services.catalog import ModelDefinition

    data = tomllib.loads((ROOT / "docs" / "models.example.toml").read_text())
    names = [ModelDefinition.model_validate(m).name for m in data["models"]]
    assert names == ["gpt-4o-mini", "claude-haiku", "bedrock-claude-haiku", "local-gemma"]


def test_the_capability_matrix_in_the_docs_is_the_one_the_code_uses() -> None:
    from mtai.providers.llm.capabilities import matrix
    from mtai.providers.llm.registry import SUPPORT_BY_PROVIDER

    doc = (ROOT / "docs" / "gateway.md").read_text()
    start, end = "<!-- capability-matrix:start -->\n", "<!-- capability-matrix:end -->"
    assert start in doc, "docs/gateway.md lost its capability-matrix markers"
    assert end in doc, "docs/gateway.md lost its capability-matrix markers"
    shown = doc.split(start, 1)[1].split(end, 1)[0]
    assert shown == matrix(SUPPORT_BY_PROVIDER), (
        "docs/gateway.md's capability matrix is stale: replace it with `mtai capabilities`"
    )
