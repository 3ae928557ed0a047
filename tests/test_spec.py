from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from bench.core.spec import SPEC_VERSION, ExperimentSpec

BASE = dict(teacher="effnet-lite0", student="resnet", method="kd", dataset="digits",
            hparams={"lr": 0.01, "alpha": 0.5}, data={"image_size": 64}, epochs=3, seed=1)


def test_key_is_sha256_of_canonical_json() -> None:
    spec = ExperimentSpec.create(**BASE)
    payload = {"version": SPEC_VERSION, **BASE}
    expected = hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:16]
    assert spec.key == expected


def test_key_ignores_hparam_order_and_is_stable_across_processes() -> None:
    a = ExperimentSpec.create(**BASE)
    b = ExperimentSpec.create(**{**BASE, "hparams": {"alpha": 0.5, "lr": 0.01}})
    assert a == b and a.key == b.key and hash(a) == hash(b)
    code = (
        "from bench.core.spec import ExperimentSpec;"
        f"print(ExperimentSpec.create(**{BASE!r}).key)"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert other.stdout.strip() == a.key


@pytest.mark.parametrize(
    "change",
    [{"teacher": "x"}, {"student": "bottleneck"}, {"method": "scratch"}, {"dataset": "fashion-mnist"},
     {"hparams": {"lr": 0.02, "alpha": 0.5}}, {"data": {"image_size": 96}}, {"epochs": 4}, {"seed": 2}],
)
def test_any_field_changes_the_key(change: dict) -> None:
    assert ExperimentSpec.create(**{**BASE, **change}).key != ExperimentSpec.create(**BASE).key


def test_round_trip_and_frozen() -> None:
    spec = ExperimentSpec.create(**BASE)
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(AttributeError):
        spec.seed = 3  # type: ignore[misc]
