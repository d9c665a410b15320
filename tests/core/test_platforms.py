"""The platforms' topic and payload rules."""

from gateway.core.platforms import PLATFORMS, payload_problem, topic_problem

AWS = PLATFORMS["aws-iot-core"]
AZURE = PLATFORMS["azure-iot-hub"]


def test_aws_topics_at_most_256_bytes_and_7_slashes() -> None:
    assert topic_problem(AWS, b"a/b/c/d/e/f/g/h") is None  # 7 slashes
    assert "8 slashes" in (topic_problem(AWS, b"a/b/c/d/e/f/g/h/i") or "")
    assert topic_problem(AWS, b"$aws/rules/r/a/b/c/d/e/f") is None  # the prefix is not counted
    assert topic_problem(AWS, b"x" * 256) is None
    assert "257 bytes" in (topic_problem(AWS, b"x" * 257) or "")


def test_azure_topics_are_not_limited_here() -> None:
    assert topic_problem(AZURE, b"devices/d/messages/events/" + b"a/" * 40) is None


def test_payload_limits() -> None:
    assert payload_problem(AWS, b"x" * 128 * 1024) is None
    assert "AWS IoT Core allows 131072" in (payload_problem(AWS, b"x" * (128 * 1024 + 1)) or "")
    assert payload_problem(AZURE, b"x" * 256 * 1024) is None
    assert payload_problem(AZURE, b"x" * (256 * 1024 + 1)) is not None
