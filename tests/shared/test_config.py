"""Config: interpolation after parsing, validation errors that name the field and position."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, parse_config

BASE = """
client_keys:
  - {name: a, key: "${KEY_A}"}
accounts:
  - name: acct
    provider: openai
    api_key: ${OPENAI_KEY:-sk-default}
    limits: {rpm: 60}
models:
  - name: m
    route: [{account: acct, model: gpt}]
"""


def test_interpolates_values_with_defaults() -> None:
    config = parse_config(BASE, "c.yaml", env={"KEY_A": "secret-a"})
    assert config.client_keys[0].key == "secret-a"
    assert config.accounts[0].api_key == "sk-default"
    assert config.accounts[0].base_url == "https://api.openai.com/v1"


def test_a_secret_cannot_change_the_structure() -> None:
    config = parse_config(BASE, "c.yaml", env={"KEY_A": "x\n  - {name: evil, key: k}"})
    assert len(config.client_keys) == 1 and config.client_keys[0].key.startswith("x\n")


def test_missing_variable_names_field_and_position() -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml:3:\d+: client_keys\[0\]\.key: .*KEY_A"):
        parse_config(BASE, "c.yaml", env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accounts: [{name: a, provider: openai, api_key: k, limits: {rpm: fast}}]", "accounts[0].limits.rpm"),
        ("accounts: [{name: a, provider: nope}]", "accounts[0].provider"),
        ("accounts: [{name: a, provider: openai}]", "accounts[0].api_key"),
        ("models: [{name: m, route: [{account: ghost, model: x}]}]", "models[0].route[0].account"),
        ("colour: blue", "colour"),
        ("accounts: [{name: a, provider: mock, base_url: u}, {name: a, provider: mock, base_url: u}]",
         "accounts[1].name"),
        ("accounts: [{name: a, provider: mock, base_url: u, limits: {rpm: 0}}]", "accounts[0].limits.rpm"),
        ("accounts: [{name: a, provider: mock}]", "accounts[0].base_url"),
    ],
)
def test_invalid_fields_are_named(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", env={})
    message = str(info.value)
    assert message.startswith("c.yaml:1:") and expected in message


def test_broken_yaml_gives_a_position() -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml:2:\d+: not valid YAML"):
        parse_config("accounts:\n  - [unclosed", "c.yaml", env={})


def test_keys_stay_out_of_reprs() -> None:
    config = parse_config(BASE, "c.yaml", env={"KEY_A": "secret-a", "OPENAI_KEY": "sk-live-123"})
    assert "sk-live-123" not in repr(config.accounts[0]) and "secret-a" not in repr(config.client_keys[0])


EMBEDDING = """
accounts:
  - {name: acct, provider: PROVIDER, base_url: "http://127.0.0.1:9/v1", api_key: k}
models:
  - name: embed
    kind: embedding
    route: [{account: acct, model: e}]
"""


@pytest.mark.parametrize("provider", ["anthropic", "deepseek"])
def test_an_embedding_model_on_a_provider_without_embeddings_is_refused(provider: str) -> None:
    with pytest.raises(ConfigError, match=rf"c\.yaml:7:\d+: models\[0\]\.route\[0\]\.account: .*{provider} has no "
                                          r"embeddings API"):
        parse_config(EMBEDDING.replace("PROVIDER", provider), "c.yaml", env={})


@pytest.mark.parametrize("provider", ["openai", "gemini", "mistral", "openai-compatible", "mock"])
def test_an_embedding_model_on_an_embedding_provider_loads(provider: str) -> None:
    config = parse_config(EMBEDDING.replace("PROVIDER", provider), "c.yaml", env={})
    model = config.model("embed")
    assert model is not None and model.kind == "embedding"


def test_max_embedding_inputs_must_be_positive() -> None:
    text = EMBEDDING.replace("PROVIDER", "openai").replace("api_key: k}", "api_key: k, max_embedding_inputs: 0}")
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.max_embedding_inputs: must be a positive number"):
        parse_config(text, "c.yaml", env={})


def test_api_key_file_is_read_and_a_dump_redacts_every_secret(tmp_path: Path) -> None:
    from shared.config import REDACTED, redacted

    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file-123\n")
    config = parse_config(f"""
client_keys: [{{name: a, key: sk-client-1}}]
accounts:
  - {{name: x, provider: openai, api_key_file: "{key_file}", headers: {{x-auth: hdr-secret}}}}
""", env={})
    assert config.accounts[0].api_key == "sk-from-file-123"
    dumped = str(redacted(config))
    assert "sk-from-file-123" not in dumped and "sk-client-1" not in dumped and "hdr-secret" not in dumped
    assert dumped.count(REDACTED) == 3


def test_a_dump_redacts_a_proxy_password() -> None:
    from shared.config import REDACTED, redacted

    config = parse_config("accounts: [{name: x, provider: openai, api_key: k, proxy: 'http://me:pw-secret@127.0.0.1:3128'}]",
                          env={})
    assert redacted(config)["accounts"][0]["proxy"] == f"http://me:{REDACTED}@127.0.0.1:3128"


def test_api_key_file_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"accounts\[0\].api_key_file: cannot read"):
        parse_config(f"accounts: [{{name: x, provider: openai, api_key_file: {tmp_path}/missing}}]", env={})
    with pytest.raises(ConfigError, match="not both"):
        parse_config(f"accounts: [{{name: x, provider: openai, api_key: k, api_key_file: {tmp_path}/k}}]", env={})

def test_fallbacks_must_name_other_models() -> None:
    config = parse_config(BASE + """  - name: m2
    route: [{account: acct, model: gpt}]
    fallbacks: [m]
""", "c.yaml", env={"KEY_A": "a"})
    assert config.model("m2").fallbacks == ["m"]  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+:\d+: models\[1\]\.fallbacks\[0\]: no other model named 'nope'"):
        parse_config(BASE + """  - name: m2
    route: [{account: acct, model: gpt}]
    fallbacks: [nope]
""", "c.yaml", env={"KEY_A": "a"})


def test_reliability_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"queue\.retry_base_seconds: must be a positive number"):
        parse_config(BASE + "queue: {retry_base_seconds: 0}\n", "c.yaml", env={"KEY_A": "a"})
    with pytest.raises(ConfigError, match=r"queue\.upstream_retries: must not be negative"):
        parse_config(BASE + "queue: {upstream_retries: -1}\n", "c.yaml", env={"KEY_A": "a"})
