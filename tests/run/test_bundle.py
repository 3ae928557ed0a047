"""Bundled training (bench/run/bundle.py, stacked.py, train_bundle.py): which cells bundle, and bundled cells equal
their separate runs (losses, val/test accuracy, test predictions), fail alone, and resume alone."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.core.registries import METHODS, STUDENTS
from bench.core.spec import ExperimentSpec
from bench.methods.base import MethodContext
from bench.run.bundle import STATELESS_METHODS, bundle_key
from bench.run.train import NonFiniteError, TrainData, TrainResult, predict_logits, train_student
from bench.run.train_bundle import BundleCell, train_bundle
from bench.students.base import StudentContext
from bench.sweep.checkpoint import Checkpointer

CPU = torch.device("cpu")
DIM, CLASSES = 24, 5
BASE = {"lr": 1e-2, "weight_decay": 0.05, "batch_size": 16, "alpha": 0.5, "temperature": 4.0,
        "hidden_dim": 32, "bottleneck_dim": 8, "embed_dim": 8}  # dropout: the student's default, 0.1


def spec(**changes: object) -> ExperimentSpec:
    values: dict = {"teacher": "t", "student": "bottleneck", "method": "kd", "dataset": "digits",
                    "hparams": dict(BASE), "data": {"train_limit": 100}, "epochs": 3, "seed": 0}
    for name, value in changes.items():
        if name in ("hparams", "data"):
            values[name] = {**values[name], **value}  # type: ignore[dict-item]
        else:
            values[name] = value
    return ExperimentSpec.create(**values)


def test_bundle_key_groups_cells_that_differ_only_in_values() -> None:
    key = bundle_key(spec())
    assert key is not None
    assert bundle_key(spec(seed=3, hparams={"lr": 1e-3, "alpha": 0.9, "dropout": 0.0, "weight_decay": 0})) == key
    for other in (spec(hparams={"hidden_dim": 64}), spec(hparams={"batch_size": 32}), spec(epochs=4),
                  spec(method="scratch"), spec(teacher="u"), spec(data={"train_limit": 50}),
                  spec(student="projection")):
        assert bundle_key(other) not in (None, key)
    for alone in (spec(method="crd"), spec(method="probe"), spec(student="resnet8"),
                  spec(hparams={"optimizer": "sgd"}), spec(data={"teacher_views": "cached"}),
                  spec(data={"augment": "flip"}), spec(data={"precision": "bf16"}), spec(data={"compile": True})):
        assert bundle_key(alone) is None


@pytest.mark.parametrize("name", sorted(STATELESS_METHODS))
def test_bundled_methods_have_no_parameters_or_per_sample_state(name: str) -> None:
    entry = METHODS.entry(name)
    method = entry.obj(MethodContext(CLASSES, DIM, 8), BASE)
    assert list(method.parameters()) == [] and list(method.buffers()) == [] and not entry.obj.reads_train_labels


@pytest.mark.parametrize("name", sorted(STATELESS_METHODS))
def test_stacked_terms_equal_each_models_own_terms(name: str) -> None:
    """A bundle computes every model's loss terms at once (Method.stacked_terms); each model's must be what its own
    method gives on its slice: per-model temperature, alpha and label smoothing (two distinct values), unlabeled
    (transfer-set) rows and a model with every row unlabeled included."""
    generator = torch.Generator().manual_seed(3)
    hparams = [{**BASE, "temperature": t, "alpha": a} for t, a in ((4.0, 0.9), (1.0, 0.5), (8.0, 0.1), (2.0, 0.7))]
    methods = [METHODS.get(name)(MethodContext(CLASSES, DIM, 8), h) for h in hparams]
    for method, smoothing in zip(methods, (0.0, 0.1, 0.0, 0.2), strict=True):
        method.label_smoothing = smoothing
    student = {"logits": 3 * torch.randn(4, 16, CLASSES, generator=generator)}
    teacher = {"logits": 3 * torch.randn(4, 16, CLASSES, generator=generator)}
    labels = torch.randint(0, CLASSES, (4, 16), generator=generator)
    labels[1, :5] = -1
    labels[3] = -1
    stacked = type(methods[0]).stacked_terms(methods, student, teacher, labels)
    for m, method in enumerate(methods):
        own = method({"logits": student["logits"][m]}, {"logits": teacher["logits"][m]}, labels[m])
        assert list(stacked) == list(own)
        for term, value in own.items():
            assert stacked[term][m].item() == pytest.approx(value.item(), rel=1e-6, abs=1e-7), (m, term)
    assert len({round(stacked["ce"][m].item(), 5) for m in range(3)}) == 3  # the models' terms are their own


def test_per_model_constants_are_made_once_per_distinct_values() -> None:
    """A bundle's per-model constants (temperatures, term weights) are made once, not every step (on a GPU each new
    one is a copy the host waits for)."""
    from bench.methods.losses import per_model

    first = per_model([[0.1, 0.9], [0.3, 0.7]], CPU, torch.float32)
    assert per_model([[0.1, 0.9], [0.3, 0.7]], CPU, torch.float32) is first
    assert torch.allclose(first, torch.tensor([[0.1, 0.9], [0.3, 0.7]]))
    assert per_model([[0.1, 0.9], [0.3, 0.8]], CPU, torch.float32) is not first
    assert per_model([[0.1, 0.9], [0.3, 0.7]], CPU, torch.float64).dtype == torch.float64


def test_dropout_masks_from_an_own_generator_equal_the_global_ones() -> None:
    x = torch.rand(16, 32) + 0.5
    torch.manual_seed(11)
    expected = [F.dropout(x, 0.3, training=True) for _ in range(3)]
    generator = torch.Generator().manual_seed(11)
    drawn = [x * torch.empty(16, 32).bernoulli_(0.7, generator=generator).div_(0.7) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(expected, drawn, strict=True))
    assert not torch.equal(expected[0], expected[1])


def data() -> TrainData:
    """Noisy clusters of 'teacher features' and a tiny random teacher's logits (so kd's term is not trivial)."""
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(CLASSES, DIM, generator=generator)
    splits = {}
    for split, n in (("train", 120), ("val", 40), ("test", 60)):
        labels = torch.randint(0, CLASSES, (n,), generator=generator)
        splits[split] = (centers[labels] + 1.5 * torch.randn(n, DIM, generator=generator), labels)
    noise = splits["train"][0] @ torch.randn(DIM, CLASSES, generator=generator) / DIM  # a tiny random linear part
    logits = 4.0 * F.one_hot(splits["train"][1], CLASSES).float() + noise  # a teacher that mostly knows the class
    return TrainData(inputs={s: x for s, (x, _) in splits.items()}, labels={s: y for s, (_, y) in splits.items()},
                     teacher_train={"logits": logits})


def build(student: str, method: str, hparams: dict, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Student and method as run_spec builds them: seeded by the spec's seed first."""
    torch.manual_seed(seed)
    built = STUDENTS.entry(student).obj(StudentContext(CLASSES, DIM, 8, input_shape=(DIM,)), hparams)
    return built, METHODS.get(method)(MethodContext(CLASSES, DIM, built.embed_dim), hparams)


def settings() -> list[tuple[int, dict]]:
    """3 seeds x 2 lrs x 2 alphas; one cell without dropout (p = 0 draws no mask)."""
    cells = [(seed, {**BASE, "lr": lr, "alpha": alpha})
             for seed, lr, alpha in product((0, 1, 2), (1e-2, 3e-3), (0.3, 0.9))]
    cells[-1][1]["dropout"] = 0.0
    return cells


def separate(student: str, method: str, cells: list[tuple[int, dict]], epochs: int) -> list[tuple]:
    out = []
    for seed, hparams in cells:
        model, loss = build(student, method, hparams, seed)
        result = train_student(model, loss, data(), hparams, epochs, seed, CPU)
        out.append((result, predict_logits(model, data().inputs["test"], CPU).argmax(-1)))
    return out


def bundled(student: str, method: str, cells: list[tuple[int, dict]], epochs: int, **extra: object) -> list[tuple]:
    built = [build(student, method, hparams, seed) for seed, hparams in cells]
    results = train_bundle([BundleCell(model, loss, data(), hparams, epochs, seed, **extra)  # type: ignore[arg-type]
                            for (model, loss), (seed, hparams) in zip(built, cells, strict=True)], CPU)
    return [(result, predict_logits(model, data().inputs["test"], CPU).argmax(-1) if isinstance(result, TrainResult)
             else None) for result, (model, _) in zip(results, built, strict=True)]


def assert_equal_runs(got: tuple, want: tuple) -> None:
    """Per-epoch losses within 1e-4, val/test accuracy within 1e-3, the same test predictions."""
    (result, predictions), (expected, expected_predictions) = got, want
    assert [r.train_loss for r in result.epochs] == pytest.approx([r.train_loss for r in expected.epochs], abs=1e-4)
    for record, reference in zip(result.epochs, expected.epochs, strict=True):
        assert record.loss_terms == pytest.approx(reference.loss_terms, abs=1e-4)
        assert record.val_acc == pytest.approx(reference.val_acc, abs=1e-3)
        assert record.train_acc == pytest.approx(reference.train_acc, abs=1e-3)
    assert result.test_acc == pytest.approx(expected.test_acc, abs=1e-3)
    assert torch.equal(predictions, expected_predictions)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("student", "method"), [("bottleneck", "kd"), ("projection", "scratch")])
def test_bundled_cells_equal_their_separate_runs(student: str, method: str) -> None:
    cells = settings() if student == "bottleneck" else settings()[::2][:4]  # scratch reads no alpha
    want, got = separate(student, method, cells, 3), bundled(student, method, cells, 3)
    for pair in zip(got, want, strict=True):
        assert_equal_runs(*pair)
    losses = {round(result.epochs[-1].train_loss, 4) for result, _ in want}
    assert len(losses) == len(cells)  # every setting trained its own model (a shared slice would repeat losses)
    assert max(result.test_acc for result, _ in want) > 0.75  # they learned something worth comparing (chance 0.2)


@pytest.mark.usefixtures("one_thread")
def test_a_non_finite_cell_fails_alone() -> None:
    cells = [(0, dict(BASE)), (1, {**BASE, "lr": 1e36}), (2, dict(BASE))]
    got = bundled("bottleneck", "kd", cells, 2)
    assert isinstance(got[1][0], NonFiniteError) and "non-finite loss" in str(got[1][0])
    want = separate("bottleneck", "kd", [cells[0], cells[2]], 2)
    for pair in zip([got[0], got[2]], want, strict=True):
        assert_equal_runs(*pair)


class Interrupt(KeyboardInterrupt):
    """Stands in for Ctrl-C after an epoch."""


@pytest.mark.usefixtures("one_thread")
def test_an_interrupted_bundle_resumes_cell_by_cell(tmp_path: Path) -> None:
    cells = settings()[:3]
    checkpoints = [Checkpointer(tmp_path, f"cell{i}", 3) for i in range(len(cells))]

    def stop(record) -> None:  # noqa: ANN001
        if record.epoch == 0:
            raise Interrupt

    built = [build("bottleneck", "kd", hparams, seed) for seed, hparams in cells]
    with pytest.raises(Interrupt):
        train_bundle([BundleCell(model, loss, data(), hparams, 3, seed, on_epoch=stop, checkpoint=checkpoint)
                      for (model, loss), (seed, hparams), checkpoint in zip(built, cells, checkpoints, strict=True)],
                     CPU)
    assert [checkpoint.saved_epoch() for checkpoint in checkpoints] == [1, 1, 1]
    want = separate("bottleneck", "kd", cells, 3)
    for (seed, hparams), checkpoint, expected in zip(cells, checkpoints, want, strict=True):
        model, loss = build("bottleneck", "kd", hparams, 99)  # other initial weights: the checkpoint must win
        result = train_student(model, loss, data(), hparams, 3, seed, CPU, checkpoint=checkpoint)
        assert result.resumed_from_epoch == 1
        assert_equal_runs((result, predict_logits(model, data().inputs["test"], CPU).argmax(-1)), expected)


@pytest.mark.parametrize("fused", [False, True])
def test_stacked_adamw_updates_each_slice_as_torch_adamw_updates_its_model(fused: bool) -> None:
    """Per-slice lr and weight decay (0 for one slice); fused=False is bit for bit the single-tensor update."""
    from bench.run.stacked import StackedAdamW, StackedHeads

    lrs, decays = [1e-2, 3e-3, 1e-2], [0.05, 0.0, 0.05]
    students = [build("bottleneck", "kd", BASE, seed)[0] for seed in range(3)]
    alone = [build("bottleneck", "kd", BASE, seed)[0] for seed in range(3)]
    optimizers = [torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=wd)
                  for m, lr, wd in zip(alone, lrs, decays, strict=True)]
    stacked = StackedHeads(students, [torch.Generator() for _ in students])
    optimizer = StackedAdamW(stacked, decays, fused=fused)
    for _ in range(4):
        grads = {name: torch.randn_like(value) for name, value in stacked.stack.items()}
        for name, value in stacked.stack.items():
            value.grad = grads[name].clone()
        optimizer.step(lrs)
        for i, (model, torch_optimizer) in enumerate(zip(alone, optimizers, strict=True)):
            for name, parameter in model.named_parameters():
                parameter.grad = stacked.layout(name, grads[name.replace(".", "__")][i])
            torch_optimizer.step()
    stacked.write_back(students)
    gap = max((a - b).abs().max().item() for s, m in zip(students, alone, strict=True)
              for a, b in zip(s.parameters(), m.parameters(), strict=True))
    start = build("bottleneck", "kd", BASE, 0)[0].parameters()
    moved = min((a - b).abs().max().item() for a, b in zip(students[0].parameters(), start, strict=True))
    assert moved > 1e-3  # four steps at lr >= 3e-3 moved every tensor
    assert gap == 0.0 if not fused else gap < 1e-6
    state = optimizer.slice_state(1)
    assert [s["exp_avg"].shape for s in state] == [p.shape for p in alone[1].parameters()]
    reference = optimizers[1].state_dict()["state"]
    for index, own in enumerate(state):
        assert own["step"].item() == reference[index]["step"].item() == 4
        assert torch.allclose(own["exp_avg_sq"], reference[index]["exp_avg_sq"], rtol=1e-5, atol=1e-12)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("student", "method"), [("bottleneck", "kd"), ("projection", "scratch")])
def test_a_cell_trains_the_same_in_a_bundle_of_any_size(student: str, method: str) -> None:
    """Each slice computes as if alone, so a cell's numbers do not depend on which cells were waiting beside it
    (why a lone bundleable cell still trains in the stacked model): bit for bit, alone, in a pair, in the whole."""
    cells = settings() if student == "bottleneck" else settings()[::2][:4]
    whole = bundled(student, method, cells, 2)
    for index, part in ((0, [cells[0]]), (len(cells) - 1, [cells[-1]]), (1, cells[:2])):
        got = bundled(student, method, part, 2)[index if len(part) > 1 else 0]
        want = whole[index]
        assert [r.train_loss for r in got[0].epochs] == [r.train_loss for r in want[0].epochs]
        assert [r.val_acc for r in got[0].epochs] == [r.val_acc for r in want[0].epochs]
        assert got[0].test_acc == want[0].test_acc and torch.equal(got[1], want[1])


@pytest.mark.usefixtures("one_thread")
def test_a_bundle_whose_every_cell_fails_ends_with_each_error() -> None:
    got = bundled("bottleneck", "kd", [(0, {**BASE, "lr": 1e36}), (1, {**BASE, "lr": 1e36})], 2)
    assert all(isinstance(result, NonFiniteError) for result, _ in got)


class FullDisk:
    """A checkpointer whose writes the disk refuses."""

    def load(self) -> None:
        return None

    def save(self, state: dict) -> None:
        raise OSError(28, "No space left on device")


@pytest.mark.usefixtures("one_thread")
def test_a_checkpoint_the_disk_refuses_fails_its_cell_alone() -> None:
    cells = settings()[:3]
    built = [build("bottleneck", "kd", hparams, seed) for seed, hparams in cells]
    results = train_bundle([BundleCell(model, loss, data(), hparams, 2, seed,
                                       checkpoint=FullDisk() if i == 1 else None)  # type: ignore[arg-type]
                            for i, ((model, loss), (seed, hparams)) in enumerate(zip(built, cells, strict=True))], CPU)
    assert isinstance(results[1], OSError) and "No space left" in str(results[1])
    want = separate("bottleneck", "kd", [cells[0], cells[2]], 2)
    for (model, _), result, expected in zip([built[0], built[2]], [results[0], results[2]], want, strict=True):
        assert_equal_runs((result, predict_logits(model, data().inputs["test"], CPU).argmax(-1)), expected)
