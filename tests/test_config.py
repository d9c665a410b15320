from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_settings, redacted
from gateway.config_example import render_example
from gateway.errors import ConfigError
from gateway.units import format_duration, parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1s", 1.0), ("5m", 300.0), ("2h", 7200.0), ("1.5s", 1.5), (3, 3.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 min", "-1s", "1sec", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_print_back_as_written() -> None:
    assert [format_duration(s) for s in (0.5, 1, 300, 7200, 0.25)] == [
        "500ms",
        "1s",
        "5m",
        "2h",
        "250ms",
    ]


def test_sizes() -> None:
    assert parse_size("1GB") == 1_000_000_000
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError, match="size"):
        parse_size("lots")


def test_example_config_is_valid_and_rendered_from_the_fields() -> None:
    example = ROOT / "config" / "gateway.example.toml"
    assert example.read_text(encoding="utf-8") == render_example(), (
        "config/gateway.example.toml is stale: regenerate it with "
        "python -c 'from gateway.config_example import render_example; "
        'print(render_example(), end="")\' > config/gateway.example.toml'
    )
    settings = load_settings(example)
    assert [group.name for group in settings.poll] == ["fast", "slow"]


def test_every_key_of_the_spec_example_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "wincc_password").write_text("s3cret-wincc\n", encoding="utf-8")
    (tmp_path / "mqtt_password").write_text("s3cret-mqtt", encoding="utf-8")
    path = write(
        tmp_path,
        f"""
[wincc]
url = "https://wincc.example:443"
dialect = "rest"
username = "gateway"
password_file = "{tmp_path / "wincc_password"}"
ca_file = "/etc/wincc-gateway/wincc-ca.pem"
timeout = "5s"
max_concurrency = 8

[[poll]]
name = "fast"
interval = "1s"
tags = ["System1.Tank*.Level", "System1.Pump1.Speed"]
deadband = 0.5

[alarms]
interval = "1s"

[quality]
policy = "flag"

[mqtt]
url = "mqtts://broker.example:8883"
client_id = "edge-01"
topic_prefix = "wincc/edge-01"
qos = 1
retain = true
protocol = 5
username = "edge-01"
password_file = "{tmp_path / "mqtt_password"}"
ca_file = "/etc/wincc-gateway/broker-ca.pem"
cert_file = "/etc/wincc-gateway/edge-01.pem"
key_file = "/etc/wincc-gateway/edge-01.key"

[commands]
writable = ["System1.*.Setpoint"]
max_age = "30s"

[buffer]
path = "/var/lib/wincc-gateway/buffer.db"
max_size = "1GB"

[health]
listen = "127.0.0.1:9100"
""",
    )
    settings = load_settings(path)
    assert settings.wincc.password is not None
    assert settings.wincc.password.get_secret_value() == "s3cret-wincc"
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret-mqtt"
    assert settings.poll[0].interval == 1.0
    assert settings.commands.max_age == 30.0
    assert settings.buffer.max_size == 1_000_000_000
    dumped = repr(redacted(settings))
    assert "s3cret" not in dumped
    assert "**********" in dumped


def test_unknown_keys_are_errors_naming_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[mqtt]\nqoss = 1\n[[poll]]\nname = "a"\ntags = ["x"]\nintervall = "1s"\n'
    )
    assert problems(path) == ["poll[0].intervall: unknown key", "mqtt.qoss: unknown key"]


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "[mqqt]\nqos = 1\n")) == ["mqqt: unknown key"]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[wincc]\ntimeout = "5 seconds"\n[mqtt]\nqos = 3\nurl = "http://x"\n'
        '[[poll]]\nname = "a"\ntags = []\n',
    )
    found = problems(path)
    assert any(line.startswith("wincc.timeout: ") and "duration" in line for line in found)
    assert any(line.startswith("mqtt.qos: ") for line in found)
    assert any(line.startswith("mqtt.url: ") for line in found)
    assert any(line.startswith("poll[0].tags: ") for line in found)


def test_plain_http_needs_the_explicit_flag(tmp_path: Path) -> None:
    found = problems(write(tmp_path, '[wincc]\nurl = "http://wincc.local"\n'))
    assert len(found) == 1
    assert found[0].startswith("wincc: url: http://")
    ok = load_settings(
        write(tmp_path, '[wincc]\nurl = "http://wincc.local"\nallow_insecure_http = true\n')
    )
    assert ok.wincc.url == "http://wincc.local"


def test_missing_secret_file_names_the_key(tmp_path: Path) -> None:
    found = problems(write(tmp_path, f'[mqtt]\npassword_file = "{tmp_path / "nope"}"\n'))
    assert len(found) == 1
    assert found[0].startswith("mqtt: password_file: cannot read")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[mqtt]\nqos = 1\nclient_id = "from-file"\n')
    monkeypatch.setenv("GATEWAY_MQTT__QOS", "0")
    monkeypatch.setenv("GATEWAY_MQTT__PASSWORD", "env-secret")
    settings = load_settings(path)
    assert settings.mqtt.qos == 0
    assert settings.mqtt.client_id == "from-file"
    assert settings.mqtt.password is not None


def test_bad_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ALARMS__INTERVAL", "soon")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert [p.split(":")[0] for p in info.value.problems] == ["alarms.interval"]


def test_duplicate_group_names_are_refused(tmp_path: Path) -> None:
    text = '[[poll]]\nname = "a"\ntags = ["x"]\n[[poll]]\nname = "a"\ntags = ["y"]\n'
    assert problems(write(tmp_path, text)) == ["poll: group names must be unique, repeated: ['a']"]


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "[mqtt\n"))
    assert "not valid TOML" in found[0]


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ('ca_file = "/etc/ca.pem"\n', "ca_file"),
        ('cert_file = "/etc/c.pem"\nkey_file = "/etc/c.key"\n', "cert_file, key_file"),
    ],
)
def test_tls_files_with_a_plain_mqtt_url_are_an_error_naming_the_keys(
    tmp_path: Path, keys: str, named: str
) -> None:
    found = problems(write(tmp_path, f'[mqtt]\nurl = "mqtt://broker.local:1883"\n{keys}'))
    assert len(found) == 1
    assert found[0].startswith("mqtt: ")
    assert f"{named} set" in found[0]
    assert "mqtts://" in found[0]
    ok = load_settings(write(tmp_path, f'[mqtt]\nurl = "mqtts://broker.local:8883"\n{keys}'))
    assert ok.mqtt.url == "mqtts://broker.local:8883"


def test_check_config_shows_tls_files_with_a_plain_mqtt_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, '[mqtt]\nurl = "mqtt://broker.local"\nca_file = "/etc/ca.pem"\n')
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config: mqtt: ca_file set but mqtt.url is mqtt://")


@pytest.mark.parametrize("prefix", ["plant\\u0007", "plant/\\ufffe", "plant\\ufdd0", "a+b"])
def test_topic_prefix_with_characters_brokers_refuse_is_an_error(
    tmp_path: Path, prefix: str
) -> None:
    found = problems(write(tmp_path, f'[mqtt]\ntopic_prefix = "{prefix}"\n'))
    assert len(found) == 1
    assert found[0].startswith("mqtt.topic_prefix: ")


def test_mqtt_url_takes_the_nodes_of_a_broker_cluster(tmp_path: Path) -> None:
    nodes = '["mqtts://a.example:8883", "mqtts://b.example:8883"]'
    settings = load_settings(write(tmp_path, f"[mqtt]\nurl = {nodes}\n"))
    assert settings.mqtt.urls == ["mqtts://a.example:8883", "mqtts://b.example:8883"]
    single = load_settings(write(tmp_path, '[mqtt]\nurl = "mqtt://broker.local"\n'))
    assert single.mqtt.urls == ["mqtt://broker.local"]


@pytest.mark.parametrize(
    ("nodes", "says"),
    [
        ("[]", "at least one broker URL"),
        ('["mqtt://a.example", "mqtts://b.example"]', "mix mqtt:// and mqtts://"),
        ('["mqtt://a.example", "http://b.example"]', "'http://b.example' is not a broker URL"),
    ],
)
def test_mqtt_url_list_problems_are_named(tmp_path: Path, nodes: str, says: str) -> None:
    found = problems(write(tmp_path, f"[mqtt]\nurl = {nodes}\n"))
    assert len(found) == 1
    assert says in found[0]


def test_wincc_url_takes_a_redundant_pair(tmp_path: Path) -> None:
    pair = '["https://wincc-a.example:8443/", "https://wincc-b.example:8443"]'
    settings = load_settings(write(tmp_path, f"[wincc]\nurl = {pair}\n"))
    assert settings.wincc.urls == ["https://wincc-a.example:8443", "https://wincc-b.example:8443"]


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ('url = ["https://a.example", "http://b.example"]', "http:// sends the WinCC password"),
        ('url = ["https://a.example", "ftp://b.example"]', "'ftp://b.example' is not an http(s)"),
        ("url = []", "at least one server URL"),
        (
            'dialect = "unified"\nurl = ["https://a.example/graphql", "https://b.example/graphql"]',
            'needs mode = "poll"',
        ),
    ],
)
def test_wincc_pair_problems_are_named(tmp_path: Path, section: str, says: str) -> None:
    found = problems(write(tmp_path, f"[wincc]\n{section}\n"))
    assert len(found) == 1
    assert says in found[0]
    unified_polled = (
        'dialect = "unified"\nmode = "poll"\nurl = ["https://a.example/g", "https://b.example/g"]'
    )
    assert len(load_settings(write(tmp_path, f"[wincc]\n{unified_polled}\n")).wincc.urls) == 2


@pytest.mark.parametrize("mqtt", ['payload = "sparkplug"', 'payload = "batch"', "retain = false"])
def test_a_gateway_pair_needs_retained_per_tag_messages(tmp_path: Path, mqtt: str) -> None:
    sparkplug = '[sparkplug]\ngroup_id = "g"\nedge_node_id = "e"\n'
    text = f'[redundancy]\nrole = "auto"\n[mqtt]\n{mqtt}\n{sparkplug}'
    found = problems(write(tmp_path, text))
    assert any('needs mqtt.payload = "per-tag" and mqtt.retain = true' in line for line in found)


def test_a_gateway_pair_derives_its_keepalive_from_the_takeover(tmp_path: Path) -> None:
    text = '[redundancy]\nrole = "auto"\ntakeover = "10s"\ninstance = "edge-01a"\n'
    redundancy = load_settings(write(tmp_path, text)).redundancy
    assert (redundancy.keepalive, redundancy.name) == (6, "edge-01a")
