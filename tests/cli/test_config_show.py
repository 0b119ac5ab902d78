"""``msgstore config show`` masks secrets: the password in ``[storage] dsn`` and settings that
are passwords (``[relay] auth_password``), in TOML and JSON; nothing else changes."""

from __future__ import annotations

import json
import tomllib

from tests.cli.conftest import Msgstore

CONFIG = """
[storage]
dsn = "postgresql://mail:s3cr3t-pw@db.example.org:5432/msgstore?sslmode=require&password=other-pw"
[relay]
smarthost = "smtp.example.org:587"
auth_user = "relay-user"
auth_password = "relay-pw-42"
"""


def test_config_show_masks_secrets(msgstore: Msgstore) -> None:
    store = msgstore.with_config(CONFIG)
    shown = store.real.ok("config", "show")
    as_json = store.ok("config", "show", "--json")
    for out in (shown.out, as_json.out):
        for secret in ("s3cr3t-pw", "other-pw", "relay-pw-42"):
            assert secret not in out
    values = tomllib.loads(shown.out)
    masked = "postgresql://mail:***@db.example.org:5432/msgstore?sslmode=require&password=***"
    for each in (values, json.loads(as_json.out)):
        assert each["storage"]["dsn"] == masked
        assert each["relay"]["auth_password"] == "***"
    assert values["relay"]["auth_user"] == "relay-user"  # not a secret
    assert values["relay"]["smarthost"] == "smtp.example.org:587"
    assert values["auth"]["password_min_length"] > 0  # a password *policy*, shown as is
