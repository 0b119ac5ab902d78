"""docs/configuration.md is generated from the declarations and must not drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from msgstore.config import EXAMPLE_TOML, Config, HostPort, config_docs, listen_keys, load_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_committed_docs_match_the_declarations() -> None:
    """A key added, removed or re-documented without regenerating the manual fails here."""
    committed = DOCS.read_text(encoding="utf-8")
    assert committed == config_docs(), (
        "docs/configuration.md is out of date: regenerate it with "
        "`msgstore config docs > docs/configuration.md` and commit the result"
    )


def test_docs_name_every_key_with_its_default() -> None:
    """Each key gets a heading, and defaults appear as a user would write them."""
    docs = config_docs()
    for section_name, section_info in Config.model_fields.items():
        assert f"## [{section_name}]\n" in docs
        section = section_info.annotation
        assert isinstance(section, type)
        for key in section.model_fields:
            assert f"### `{section_name}.{key}`\n" in docs
    assert '- default: `["127.0.0.1:1143"]`' in docs
    assert '- default: `"50M"`' in docs
    assert "- default: `not set`" in docs


def test_example_in_the_docs_is_a_valid_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example file shown to users loads without a complaint."""
    monkeypatch.chdir(tmp_path)
    assert EXAMPLE_TOML in config_docs()
    path = tmp_path / "msgstore.toml"
    path.write_text(EXAMPLE_TOML)
    config = load_config(path)
    assert config.imap.tls_listen == [HostPort("0.0.0.0", 993), HostPort("::", 993)]  # noqa: S104
    assert config.pop3.listen == []
    assert config.store.autocreate["Archive"] == "\\Archive"
    assert config.log.format == "json"
    assert len(list(listen_keys(config))) == 9
