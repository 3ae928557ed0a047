from __future__ import annotations

import pytest

from bench.core.errors import BenchError, UnknownNameError
from bench.core.registries import registries
from bench.core.registry import Registry


def test_register_and_get() -> None:
    registry: Registry[int] = Registry("thing")

    @registry.register("alpha-one", "k")
    def alpha_one() -> int:
        """First thing."""
        return 1

    assert registry.get("alpha-one") is alpha_one
    entry = registry.entry("alpha-one")
    assert (entry.card, entry.description) == ("k", "First thing.")
    assert registry.names() == ["alpha-one"]
    assert "alpha-one" in registry and len(registry) == 1


def test_duplicate_name_is_an_error() -> None:
    registry: Registry[int] = Registry("thing")
    registry.add("same", 1, "card")
    with pytest.raises(ValueError, match="duplicate thing name 'same'"):
        registry.add("same", 2, "card")


@pytest.mark.parametrize("bad", ["Upper", "with space", "under_score", "-lead", ""])
def test_names_must_be_kebab_case(bad: str) -> None:
    with pytest.raises(ValueError, match="kebab-case"):
        Registry("thing").add(bad, 1, "card")


def test_unknown_name_suggests_nearest() -> None:
    registry: Registry[int] = Registry("student")
    for name in ("resnet", "densenet", "projection"):
        registry.add(name, 0, "card")
    with pytest.raises(UnknownNameError) as info:
        registry.get("resent")
    assert str(info.value) == "unknown student 'resent'; did you mean: resnet?"
    assert isinstance(info.value, BenchError)
    with pytest.raises(BenchError, match="known: densenet, projection, resnet"):
        registry.get("zzzzzz")


def test_prefix_resolver() -> None:
    registry: Registry[str] = Registry("teacher")
    from bench.core.registry import Entry

    registry.add_prefix_resolver("timm", lambda name: Entry(name, name.upper(), "timm"))
    assert registry.get("timm:resnet18") == "TIMM:RESNET18"
    with pytest.raises(UnknownNameError):
        registry.get("other:resnet18")


ALL_ENTRIES = [(kind, entry.name) for kind, reg in registries().items() for entry in reg]


@pytest.mark.parametrize(("registry_name", "name"), ALL_ENTRIES)
def test_every_entry_has_kind_and_description(registry_name: str, name: str) -> None:
    entry = registries()[registry_name].entry(name)
    assert entry.card.label, f"{registry_name}/{name} has no card label"
    assert entry.description and "\n" not in entry.description


def test_registries_hold_the_foundation_entries() -> None:
    regs = registries()
    assert {"effnet-lite0"} <= set(regs["teachers"].names())
    assert {"projection", "bottleneck", "resnet"} <= set(regs["students"].names())
    assert {"scratch", "kd", "feature", "combined"} <= set(regs["methods"].names())
    assert {"digits", "fashion-mnist"} <= set(regs["datasets"].names())
