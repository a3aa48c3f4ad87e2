import pytest

from pipeline.registry import Registry


def test_register_lookup_and_duplicate():
    reg = Registry("widget")

    @reg.register("b")
    def build_b():
        return "b"

    reg.register("a")(lambda: "a")
    assert reg.names() == ["a", "b"] and reg["b"]() == "b"
    assert reg.register("b")(build_b) is build_b  # re-registering the same builder is harmless
    with pytest.raises(ValueError, match="widget 'b' is already registered"):
        reg.register("b")(lambda: "other")
