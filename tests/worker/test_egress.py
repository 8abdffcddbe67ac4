"""Egress settings: which proxy a call takes, how a proxy URL is read and shown, and config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, parse_config
from worker.egress import Proxy, proxy_for

VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_the_environment_picks_the_proxy_by_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://secure:3128")
    monkeypatch.setenv("HTTP_PROXY", "plain:8080")  # no scheme: http, as curl reads it
    assert proxy_for("https://api.example.com/v1", None) == Proxy("http", "secure", 3128)
    assert proxy_for("http://vllm.internal:8000/v1", None) == Proxy("http", "plain", 8080)


def test_all_proxy_is_the_fallback_and_lower_case_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://egress:1080")
    assert proxy_for("https://api.example.com", None) == Proxy("socks5", "egress", 1080)
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    assert proxy_for("https://api.example.com", None) == Proxy("http", "lower", 2)


@pytest.mark.parametrize(("no_proxy", "bypassed"), [
    ("example.com", True), (".example.com", True), ("api.example.com", True), ("*", True),
    ("other.com, example.com", True), ("ample.com", False), ("", False),
])
def test_no_proxy_matches_by_host_suffix(monkeypatch: pytest.MonkeyPatch, no_proxy: str, bypassed: bool) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (proxy_for("https://api.example.com:443/v1", None) is None) is bypassed


def test_the_accounts_setting_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://corp:3128")
    assert proxy_for("https://a.example", "socks5h://user:pw@egress-b:1081") == Proxy("socks5", "egress-b", 1081,
                                                                                      "user", "pw")
    assert proxy_for("https://a.example", "direct") is None


def test_a_proxys_credentials_never_show() -> None:
    proxy = Proxy.parse("http://team:s%3Acret@corp:3128")
    assert proxy.password == "s:cret"
    assert "cret" not in repr(proxy) and "cret" not in str(proxy)
    assert proxy.url == "http://team:s%3Acret@corp:3128"  # only for handing to httpx


ACCOUNT = "accounts: [{name: a, provider: mock, base_url: 'https://x', %s}]"


@pytest.mark.parametrize(("setting", "expected"), [
    ("ca_file: /nonexistent/ca.pem", "accounts[0].ca_file: cannot read '/nonexistent/ca.pem'"),
    ("proxy: 'ftp://user:hunter2@p:21'", "accounts[0].proxy: use http://host:port, socks5://host:port or direct"),
    ("connect_timeout_seconds: 0", "accounts[0].connect_timeout_seconds: must be a positive number"),
    ("total_timeout_seconds: -1", "accounts[0].total_timeout_seconds: must be a positive number"),
])
def test_bad_egress_settings_are_named(setting: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(ACCOUNT % setting, "c.yaml", env={})
    assert expected in str(info.value) and "hunter2" not in str(info.value)


def test_good_egress_settings_load(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = parse_config(ACCOUNT % f"ca_file: {ca}, proxy: 'socks5://p:1080', total_timeout_seconds: 30", env={})
    account = config.accounts[0]
    assert (account.ca_file, account.proxy, account.total_timeout_seconds) == (str(ca), "socks5://p:1080", 30)
