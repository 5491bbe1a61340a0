"""Configuration: TOML, SHIELD_* overrides, validation at start-up."""

import pytest

from shield import settings
from shield.settings import ConfigError


def write(tmp_path, text):
    path = tmp_path / "shield.toml"
    path.write_text(text)
    return str(path)


def test_no_file_serves_the_demo_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = settings.load(environ={})
    assert list(loaded.projects) == ["demo"] and loaded.projects["demo"].origin == "samples/"
    assert loaded.cache_dir == "var/cache" and loaded.max_source_pixels == 50_000_000


def test_file_and_environment_overrides(tmp_path):
    path = write(
        tmp_path,
        "[shield]\norigin_timeout = 3\ncache_max_bytes = 50_000_000\n"
        '[projects.shop]\norigin = "https://img.example/x"\nquality = 70\n',
    )
    loaded = settings.load(
        environ={
            "SHIELD_CONFIG": path,
            "SHIELD_ORIGIN_TIMEOUT": "2.5",
            "SHIELD_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
        }
    )
    assert loaded.origin_timeout == 2.5 and loaded.cache_max_bytes == 50_000_000
    assert loaded.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    shop = loaded.projects["shop"]
    assert (shop.origin, shop.quality, shop.is_http) == ("https://img.example/x/", 70, True)


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("[shield]\ncolour = 1\n", {}, "shield.colour"),
        ("[shield]\nmax_source_bytes = -1\n", {}, "shield.max_source_bytes"),
        ("[shield]\norigin_timeout = 'soon'\n", {}, "shield.origin_timeout"),
        ("", {"SHIELD_ADMIN_TOKEN": "short"}, "shield.admin_token"),
        ("", {"SHIELD_CACHE_MAX_BYTES": "lots"}, "shield.cache_max_bytes"),
        ("", {"SHIELD_TRUSTED_PROXIES": "not-an-ip"}, "shield.trusted_proxies"),
        ("[projects.shop]\nquality = 70\n", {}, "projects.shop.origin"),
        ("[projects.shop]\norigin = 'x/'\nquality = 500\n", {}, "projects.shop.quality"),
        ("[projects.shop]\norigin = 'ftp://x/'\n", {}, "projects.shop.origin"),
        ("[projects.metrics]\norigin = 'x/'\n", {}, "projects.metrics"),
        ("[projects.Shop]\norigin = 'x/'\n", {}, "projects.Shop"),
        ("[projects.shop]\norigin = 'x/'\nsigning_key = 'short'\n", {}, "projects.shop.signing_key"),
        ("[other]\nx = 1\n", {}, "other"),
        ("[shield\n", {}, "not valid TOML"),
    ],
)
def test_bad_configuration_refuses_to_start_naming_the_key(tmp_path, text, env, named):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        settings.load(environ={"SHIELD_CONFIG": path, **env})
    assert named in str(err.value)


def test_missing_explicit_file_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        settings.load(environ={"SHIELD_CONFIG": str(tmp_path / "nope.toml")})


def test_readme_table_lists_every_key():
    with open("README.md") as fh:
        readme = fh.read()
    for setting in settings.SHIELD_SETTINGS + settings.PROJECT_SETTINGS:
        assert f"`{setting.name}`" in readme, setting.name
