from gateway.core.quality import quality_text


def test_main_quality_and_sub_status_are_decoded() -> None:
    assert quality_text(0x80) == "good: non-specific"
    assert quality_text(0xC0) == "good (cascade): non-specific"
    assert quality_text(0x08) == "bad: not connected"
    assert quality_text(0x18) == "bad: communication failure"
    assert quality_text(0x44) == "uncertain: last usable value"
    assert quality_text(0x54) == "uncertain: engineering units exceeded"


def test_limit_bits_are_appended() -> None:
    assert quality_text(0x45) == "uncertain: last usable value, low limited"
    assert quality_text(0x46) == "uncertain: last usable value, high limited"
    assert quality_text(0x03) == "bad: non-specific, constant"


def test_every_byte_has_a_text_and_out_of_range_is_named() -> None:
    assert all(quality_text(code) for code in range(256))
    assert quality_text(0x3C) == "bad: sub-status 15"
    assert quality_text(300) == "invalid quality code 300"
