import pytest

from pipeline.registry import Registry, UnknownNameError


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


def _registries():
    """(kind, list function, lookup that raises for an unknown name) of every registry of the project."""
    from pipeline.audio.encoders import build_encoder, list_encoders
    from pipeline.proposals.backends import build_backend, list_backends
    from pipeline.proposals.config import ProposalParams
    from train.models import build_model, list_models
    from train.models.backbones import build_backbone, list_backbones
    from train.models.presets import get_preset, list_presets

    return {
        "audio encoder": (list_encoders, lambda name: build_encoder(name)),
        "proposal backend": (list_backends, lambda name: build_backend(name, ProposalParams())),
        "backbone": (list_backbones, lambda name: build_backbone(name)),
        "model": (list_models, lambda name: build_model(name)),
        "preset": (list_presets, get_preset),
    }


@pytest.mark.parametrize("kind", ["audio encoder", "proposal backend", "backbone", "model", "preset"])
def test_every_registry_loads_its_members_and_names_them_on_an_unknown_name(kind: str) -> None:
    list_members, lookup = _registries()[kind]
    known = list_members()
    assert known and known == sorted(known)
    with pytest.raises(UnknownNameError) as caught:
        lookup("no_such_member")
    message = str(caught.value)
    assert message == f"unknown {kind} 'no_such_member'; known {kind}s: {', '.join(known)}"
    assert isinstance(caught.value, LookupError) and isinstance(caught.value, ValueError)


def test_members_are_imported_on_first_lookup(tmp_path, monkeypatch) -> None:
    (tmp_path / "reg_members_demo.py").write_text(
        "from tests_registry_holder import REG\nREG.register('late')(lambda: 'built')\n"
    )
    (tmp_path / "tests_registry_holder.py").write_text(
        "from pipeline.registry import Registry\nREG = Registry('gadget', modules=('reg_members_demo',), aliases={'l': 'late'})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from tests_registry_holder import REG

    assert dict(REG) == {}  # nothing imported yet
    assert REG.lookup("l")() == "built" and REG.names() == ["late"]
