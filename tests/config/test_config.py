"""Loading msgstore.toml: defaults, every value type, and one useful line per mistake."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from msgstore.config import (
    Config,
    ConfigError,
    HostPort,
    dump_json,
    dump_toml,
    listen_keys,
    load_config,
)

LISTEN_KEYS = [
    ("imap", "listen", 1143),
    ("imap", "tls_listen", 1993),
    ("pop3", "listen", 1110),
    ("pop3", "tls_listen", 1995),
    ("lmtp", "listen", 2424),
    ("smtp", "listen", 2525),
    ("poppassd", "listen", 1106),
    ("web", "listen", 8080),
]
#: Listen keys that are off unless configured, with the port the tests give them.
OFF_BY_DEFAULT = [("delivery", "socketmap_listen", 2526)]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_text(text: str) -> Config:
    """Load ``text`` as ./msgstore.toml, so that errors start with "msgstore.toml: "."""
    Path("msgstore.toml").write_text(text)
    return load_config(Path("msgstore.toml"))


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    return info.value


def test_defaults_run_out_of_the_box(in_tmp: Path) -> None:
    """With no file, every service listens on 127.0.0.1 on its development port."""
    config = load_config()
    assert config == Config()
    for section, key, port in LISTEN_KEYS:
        assert getattr(getattr(config, section), key) == [HostPort("127.0.0.1", port)]
    assert config.tls.cert is None
    assert config.tls.key is None
    assert config.store.data_dir == in_tmp / "data"
    assert config.store.data_dir.is_absolute()
    assert config.storage.backend == "local"
    for section, key, _ in OFF_BY_DEFAULT:
        assert getattr(getattr(config, section), key) == []
    assert config.store.max_message_size == 50 * 1024 * 1024
    assert config.store.autocreate == {
        "Drafts": "\\Drafts",
        "Sent": "\\Sent",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
    }
    assert config.auth.plaintext_on_loopback is True
    assert config.log.level == "info"
    assert config.log.format == "text"


def test_listen_keys_lists_every_listener_in_declaration_order(in_tmp: Path) -> None:
    """The server binds what listen_keys yields; it covers exactly the contract's keys."""
    every = [f"{section}.{key}" for section, key, _ in LISTEN_KEYS + OFF_BY_DEFAULT]
    keys = [key for key, _ in listen_keys(Config())]
    assert sorted(keys) == sorted(every)
    assert keys.index("delivery.socketmap_listen") == keys.index("smtp.listen") + 1


@pytest.mark.parametrize(("section", "key", "port"), LISTEN_KEYS + OFF_BY_DEFAULT)
def test_listen_key_accepts_one_string(in_tmp: Path, section: str, key: str, port: int) -> None:
    """A single "host:port" string is a list of one address."""
    config = load_text(f'[{section}]\n{key} = "127.0.0.2:{port + 1}"\n')
    assert getattr(getattr(config, section), key) == [HostPort("127.0.0.2", port + 1)]


@pytest.mark.parametrize(("section", "key", "port"), LISTEN_KEYS + OFF_BY_DEFAULT)
def test_listen_key_accepts_a_list(in_tmp: Path, section: str, key: str, port: int) -> None:
    """A list mixes IPv4, bracketed IPv6 and host names."""
    config = load_text(
        f'[{section}]\n{key} = ["192.0.2.1:{port}", "[::]:{port}", "localhost:{port}"]\n'
    )
    assert getattr(getattr(config, section), key) == [
        HostPort("192.0.2.1", port),
        HostPort("::", port),
        HostPort("localhost", port),
    ]


@pytest.mark.parametrize(("section", "key", "port"), LISTEN_KEYS)
def test_empty_listen_list_turns_the_listener_off(
    in_tmp: Path, section: str, key: str, port: int
) -> None:
    """``listen = []`` means no socket for that key; the other keys keep their defaults."""
    config = load_text(f"[{section}]\n{key} = []\n")
    assert getattr(getattr(config, section), key) == []
    others = [k for k, addresses in listen_keys(config) if addresses]
    assert f"{section}.{key}" not in others
    assert len(others) == len(LISTEN_KEYS) - 1


@pytest.mark.parametrize(
    ("text", "host", "port", "canonical"),
    [
        ("127.0.0.1:143", "127.0.0.1", 143, "127.0.0.1:143"),
        ("[::1]:143", "::1", 143, "[::1]:143"),
        ("[::ffff:127.0.0.1]:993", "::ffff:127.0.0.1", 993, "[::ffff:127.0.0.1]:993"),
        ("mail.example.org:993", "mail.example.org", 993, "mail.example.org:993"),
        ("192.0.2.1:0", "192.0.2.1", 0, "192.0.2.1:0"),
        ("localhost:65535", "localhost", 65535, "localhost:65535"),
    ],
)
def test_hostport_parses_and_prints(text: str, host: str, port: int, canonical: str) -> None:
    """str() gives back what a user writes, with IPv6 in brackets."""
    address = HostPort.parse(text)
    assert (address.host, address.port) == (host, port)
    assert str(address) == canonical


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1", "write host:port"),
        ("::1:143", "IPv6 address in brackets"),
        ("[::1]143", "[::1]:143"),
        ("[zz::x]:1", "is not an IPv6 address"),
        ("host:99999", "at most 65535"),
        ("host:abc", "the port must be a number"),
        ("host:", "the port must be a number"),
        (":143", "is not a host name or IP"),
        ("bad_host!:143", "is not a host name or IP"),
    ],
)
def test_bad_listen_address_names_key_and_reason(in_tmp: Path, text: str, reason: str) -> None:
    """An unusable address is reported with the key and why."""
    error = error_of(f'[imap]\nlisten = ["127.0.0.1:1143", "{text}"]\n')
    assert error.lines[0].startswith(f"msgstore.toml: imap.listen: invalid address '{text}'")
    assert reason in error.lines[0]


def test_listen_value_of_wrong_type_is_refused(in_tmp: Path) -> None:
    """A port number alone is not an address."""
    error = error_of("[lmtp]\nlisten = 24\n")
    assert error.lines == [
        'msgstore.toml: lmtp.listen: expected "host:port" or a list of them, got 24'
    ]


def test_unknown_key_suggests_the_close_one(in_tmp: Path) -> None:
    """A typo names the file and the dotted key, and suggests the key meant."""
    error = error_of('[imap]\nlistn = "127.0.0.1:1143"\n')
    assert str(error) == "msgstore.toml: unknown key imap.listn (did you mean imap.listen?)"


def test_unknown_key_without_close_match_lists_the_section_keys(in_tmp: Path) -> None:
    """No suggestion, but the valid keys of that section."""
    error = error_of("[store]\ncompression = true\n")
    assert str(error) == (
        "msgstore.toml: unknown key store.compression "
        "(keys: data_dir, max_message_size, autocreate, default_quota, default_message_limit)"
    )


def test_unknown_section_suggests_the_close_one(in_tmp: Path) -> None:
    """A misspelt section name is caught as a whole."""
    error = error_of('[pop]\nlisten = "127.0.0.1:110"\n')
    assert str(error) == "msgstore.toml: unknown section [pop] (did you mean [pop3]?)"


def test_key_outside_a_section_points_to_its_section(in_tmp: Path) -> None:
    """A key written before any [section] header."""
    error = error_of('data_dir = "/srv/mail"\n')
    assert str(error) == (
        "msgstore.toml: unknown key data_dir (keys belong in a section: "
        "did you mean store.data_dir?)"
    )


def test_section_that_is_not_a_table_is_refused(in_tmp: Path) -> None:
    """``imap = 5`` at the top level."""
    error = error_of("imap = 5\n")
    assert str(error) == "msgstore.toml: imap: expected a table ([imap]), got 5"


@pytest.mark.parametrize(
    ("written", "octets"),
    [("10K", 10 * 1024), ("50M", 50 * 1024**2), ("1G", 1024**3), ("100", 100), (4096, 4096)],
)
def test_max_message_size_takes_binary_units(in_tmp: Path, written: object, octets: int) -> None:
    """Sizes are written with K/M/G and held as int octets."""
    value = f'"{written}"' if isinstance(written, str) else str(written)
    config = load_text(f"[store]\nmax_message_size = {value}\n")
    assert config.store.max_message_size == octets


def test_bad_size_names_key_and_value(in_tmp: Path) -> None:
    """The size parser's reason comes through, after the file and the key."""
    error = error_of('[store]\nmax_message_size = "5X"\n')
    assert str(error) == (
        "msgstore.toml: store.max_message_size: invalid size '5X': "
        "use a number with K, M or G (e.g. 100M)"
    )


def test_zero_size_is_refused(in_tmp: Path) -> None:
    """No message could be delivered with a limit of 0."""
    error = error_of("[store]\nmax_message_size = 0\n")
    assert str(error) == "msgstore.toml: store.max_message_size: must be larger than 0"


def test_cert_without_key_is_an_error(in_tmp: Path) -> None:
    """A certificate is useless without its key, so half a pair is refused."""
    error = error_of('[tls]\ncert = "/etc/ssl/mail.pem"\n')
    assert str(error) == (
        "msgstore.toml: tls.key: must be set when tls.cert is (set both or neither)"
    )


def test_key_without_cert_is_an_error(in_tmp: Path) -> None:
    """The other half."""
    error = error_of('[tls]\nkey = "/etc/ssl/mail.key"\n')
    assert str(error) == (
        "msgstore.toml: tls.cert: must be set when tls.key is (set both or neither)"
    )


def test_cert_and_key_become_absolute_paths(in_tmp: Path) -> None:
    """Relative paths are taken from the current directory."""
    config = load_text('[tls]\ncert = "tls/c.pem"\nkey = "/etc/k.pem"\n')
    assert config.tls.cert == in_tmp / "tls" / "c.pem"
    assert config.tls.key == Path("/etc/k.pem")


def test_relative_data_dir_is_resolved_against_the_current_directory(in_tmp: Path) -> None:
    """``data_dir = "mail/../store"`` is normalised to an absolute path."""
    config = load_text('[store]\ndata_dir = "mail/../store"\n')
    assert config.store.data_dir == in_tmp / "store"


def test_data_dir_argument_overrides_the_file(in_tmp: Path) -> None:
    """``--data``/MSGSTORE_DATA beat ``[store] data_dir``; other store keys stay."""
    Path("msgstore.toml").write_text('[store]\ndata_dir = "/srv/a"\nmax_message_size = "1M"\n')
    config = load_config(Path("msgstore.toml"), data_dir=Path("b"))
    assert config.store.data_dir == in_tmp / "b"
    assert config.store.max_message_size == 1024**2
    assert load_config(data_dir=Path("/srv/c")).store.data_dir == Path("/srv/c")


def test_missing_explicit_file_is_an_error(in_tmp: Path) -> None:
    """Naming a file that is not there is a mistake, not a request for defaults."""
    with pytest.raises(ConfigError) as info:
        load_config(Path("missing.toml"))
    assert str(info.value) == "missing.toml: configuration file not found"


def test_invalid_toml_names_the_file_and_line(in_tmp: Path) -> None:
    """tomllib's position comes through."""
    error = error_of("[imap\n")
    assert str(error).startswith("msgstore.toml: invalid TOML: ")
    assert "line 1" in str(error)


def test_every_problem_is_reported_one_per_line(in_tmp: Path) -> None:
    """All mistakes at once, each line complete on its own, in file order."""
    error = error_of(
        '[imap]\nlistn = "x"\n[store]\nmax_message_size = "5X"\n[storage]\nbackend = "pg"\n'
        '[auth]\nplaintext_on_loopback = "yes"\n[log]\nformat = "xml"\n'
    )
    assert error.lines == [
        "msgstore.toml: unknown key imap.listn (did you mean imap.listen?)",
        "msgstore.toml: store.max_message_size: invalid size '5X': "
        "use a number with K, M or G (e.g. 100M)",
        "msgstore.toml: storage.backend: input should be 'local' or 'postgres', got 'pg'",
        "msgstore.toml: auth.plaintext_on_loopback: expected true or false, got 'yes'",
        "msgstore.toml: log.format: input should be 'text' or 'json', got 'xml'",
    ]
    assert str(error) == "\n".join(error.lines)


def test_same_address_under_two_keys_is_refused(in_tmp: Path) -> None:
    """Two services cannot share a port; say which keys collide."""
    error = error_of('[pop3]\nlisten = "127.0.0.1:1143"\n')
    assert str(error) == (
        "msgstore.toml: pop3.listen: 127.0.0.1:1143 is also configured as imap.listen"
    )


def test_port_zero_may_repeat(in_tmp: Path) -> None:
    """Port 0 asks the system for a fresh port each time, so it never collides."""
    config = load_text('[imap]\nlisten = "127.0.0.1:0"\ntls_listen = "127.0.0.1:0"\n')
    assert config.imap.listen == config.imap.tls_listen == [HostPort("127.0.0.1", 0)]


def test_autocreate_table_is_validated_and_canonical(in_tmp: Path) -> None:
    """Mailbox names are validated; "" means no special-use attribute."""
    config = load_text(
        '[store.autocreate]\nArchive = "\\\\Archive"\n"Lists/Work" = ""\ninbox = ""\n'
    )
    assert config.store.autocreate == {"Archive": "\\Archive", "Lists/Work": "", "INBOX": ""}
    assert load_text("[store]\nautocreate = {}\n").store.autocreate == {}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('Sent = "\\\\Outbox"', "'Sent': special-use must be one of"),
        ('"a//b" = ""', "'a//b': Mailbox name has an empty hierarchy level"),
        ("Sent = 1", "'Sent': special-use must be one of"),
    ],
)
def test_bad_autocreate_entry_is_refused(in_tmp: Path, line: str, reason: str) -> None:
    """Unknown special-use attributes and invalid mailbox names."""
    error = error_of(f"[store.autocreate]\n{line}\n")
    assert error.lines[0].startswith(f"msgstore.toml: store.autocreate: {reason}")


def test_config_is_frozen(in_tmp: Path) -> None:
    """Nobody changes the configuration behind the server's back."""
    config = Config()
    with pytest.raises(ValidationError):
        config.storage.backend = "local"


def test_dump_toml_loads_back_to_the_same_config(in_tmp: Path) -> None:
    """``msgstore config show`` output is itself a valid msgstore.toml."""
    original = load_text(
        '[imap]\nlisten = ["[::1]:143", "0.0.0.0:143"]\ntls_listen = []\n'
        '[tls]\ncert = "c.pem"\nkey = "k.pem"\n'
        '[store]\nmax_message_size = "1500"\nautocreate = { "Old Mail" = "\\\\Archive" }\n'
        '[log]\nformat = "json"\nlevel = "debug"\n'
    )
    text = dump_toml(original)
    tomllib.loads(text)
    assert load_text(text) == original


def test_dump_toml_comments_out_unset_keys(in_tmp: Path) -> None:
    """TOML has no null: an unset path is shown as a comment."""
    text = dump_toml(Config())
    assert "# cert is not set\n" in text
    assert '[store]\ndata_dir = "' + str(in_tmp / "data") + '"\n' in text
    assert load_text(text) == Config()


def test_dump_json_keeps_written_units(in_tmp: Path) -> None:
    """JSON shows sizes as written and addresses as strings."""
    data = json.loads(dump_json(Config()))
    assert data["store"]["max_message_size"] == "50M"
    assert data["imap"]["listen"] == ["127.0.0.1:1143"]
    assert data["tls"] == {"cert": None, "key": None}


@given(
    host=st.one_of(st.ip_addresses().map(str), st.sampled_from(["localhost", "mail.example.org"])),
    port=st.integers(min_value=0, max_value=65535),
)
def test_hostport_str_parses_back(host: str, port: int) -> None:
    """Any address printed by str() parses back to the same value (IPv6 gets its brackets)."""
    address = HostPort(host, port)
    assert HostPort.parse(str(address)) == address
