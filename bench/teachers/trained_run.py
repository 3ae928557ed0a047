"""`run:<spec key>`: a student trained by an earlier run, frozen and used as a teacher (RepDistiller's protocol).

The weights path is the run's kept safetensors artifact (bench/config/run_teachers.py finds the row, checks the
file's sha256 and passes the path down): its metadata holds the run's spec (student name and hparams) and its
input normalisation, and its `student.` tensors the trained weights, so the network is rebuilt without unpickling
anything. The teacher gives the taps its student returns (logits, pooled = the student's embedding, feature_map,
hidden.<i>); its own logits are the KD targets and its test accuracy the reference (bench/teacher_outputs/
reference.py `own_head_reference`), and its fingerprint is the artifact's sha256, which keys the feature cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.core.cards import TeacherCard
from bench.core.errors import BenchError
from bench.core.registries import STUDENTS, TEACHERS
from bench.core.registry import Entry
from bench.core.taps import FEATURE_MAP, LOGITS, POOLED
from bench.teachers.base import Preprocess, Teacher, file_fingerprint

PREFIX = "run"
STUDENT_PREFIX = "student."  # bench/run/kept.py's prefix of the student's tensors in an artifact
CARD_TAPS = (LOGITS, POOLED)  # an undeclared run's card (declare_run gives the artifact's); the built teacher says all
STAND_IN = "stand-in"  # the fingerprint of a `bench plan` stand-in (random init, never a cache key)


def run_name(spec_key: str) -> str:
    """The teacher name of a run: `run:` and the first 12 characters of its spec key."""
    return f"{PREFIX}:{spec_key[:12]}"


def artifact_facts(path: Path) -> dict[str, Any]:
    """The artifact's metadata (spec, norm) and its student tensors' shapes, read from the header only."""
    from safetensors import safe_open

    if not path.is_file():
        raise BenchError(f"trained-run teacher weights {path} not found; give the run's artifact file")
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # noqa: BLE001 - any header failure is a bad file for the user
        raise BenchError(f"cannot read trained-run artifact {path}: {type(error).__name__}; re-run its cell") from None
    if metadata.get("kind") != "student" or "spec" not in metadata or metadata.get("norm", "null") == "null":
        raise BenchError(f"artifact {path} is not a standalone student's (kind {metadata.get('kind')!r}); only a "
                         "trained image student can be a teacher")
    return {"spec": json.loads(metadata["spec"]), "norm": json.loads(metadata["norm"]), "shapes": shapes,
            "spec_key": metadata.get("spec_key", "")}


def _student_at(facts: dict[str, Any], num_classes: int, device: str | torch.device) -> torch.nn.Module:
    from bench.students.base import StudentContext

    spec, norm = facts["spec"], facts["norm"]
    context = StudentContext(num_classes=num_classes, teacher_dim=0, image_size=int(norm["size"]), in_channels=3)
    with torch.device(device):  # images are RGB (greyscale repeated), as bench/data/images.py makes them
        return STUDENTS.get(spec["student"])(context, spec.get("hparams", {}))


def num_classes_of(facts: dict[str, Any]) -> int:
    """The artifact's class count: the size of the tensor that differs from a one-class build (the classifier)."""
    built = _student_at(facts, 1, "meta").state_dict()
    shapes = {name[len(STUDENT_PREFIX):]: shape for name, shape in facts["shapes"].items()
              if name.startswith(STUDENT_PREFIX)}
    if set(shapes) != set(built):
        raise BenchError(f"the trained-run artifact's tensors do not fit student {facts['spec']['student']!r}; "
                         "re-run its cell")
    classes = {shapes[name][0] for name, value in built.items() if tuple(value.shape) != shapes[name]}
    if len(classes) > 1:
        raise BenchError(f"the trained-run artifact does not fit student {facts['spec']['student']!r}")
    return classes.pop() if classes else 1


def build_student(facts: dict[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The run's student network, built from its spec's name and hparams at the artifact's class count."""
    return _student_at(facts, num_classes_of(facts), device)


class OwnSize(Preprocess):
    """A trained run's input: the size and normalisation its student trained on, whatever data.image_size says."""

    def with_size(self, size: int | None) -> Preprocess:
        return self


class TrainedRunTeacher(Teacher):
    """A trained standalone student as a frozen teacher: its logits, embedding (pooled) and conv taps."""

    family = "bench-run"
    modality = "image"
    channels_last = False

    def __init__(self, name: str, student: torch.nn.Module, preprocess: Preprocess, fingerprint: str,
                 taps: tuple[str, ...], num_classes: int, source: dict[str, Any]) -> None:
        super().__init__(name, student, preprocess, int(student.embed_dim), fingerprint)
        self.taps = taps
        self.num_classes = num_classes
        self.source = source  # the run's student, dataset, seed and method (said in the reference row)

    def features(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        outputs = self.encoder(images)
        named = {**outputs, POOLED: outputs["embedding"]}
        return {tap: named[tap].float() for tap in taps}


def load_trained_run(name: str, path: Path) -> TrainedRunTeacher:
    """Rebuild the run's student from the artifact at `path` and load its weights (strict: every tensor fits)."""
    from safetensors.torch import load_file

    facts = artifact_facts(path)
    key = name.split(":", 1)[1]
    if not str(facts["spec_key"]).startswith(key):
        raise BenchError(f"teacher {name!r}: weights {path} hold run {str(facts['spec_key'])[:12]}, not {key}; "
                         "give that run's artifact")
    student = build_student(facts)
    state = {k[len(STUDENT_PREFIX):]: v for k, v in load_file(str(path)).items() if k.startswith(STUDENT_PREFIX)}
    try:
        student.load_state_dict(state)
    except RuntimeError as error:
        raise BenchError(f"teacher {name!r}: the artifact {path} does not fit student "
                         f"{facts['spec']['student']!r}: {str(error).splitlines()[0]}") from None
    norm = facts["norm"]
    preprocess = OwnSize(int(norm["size"]), tuple(norm["mean"]), tuple(norm["std"]), "bilinear")
    with torch.no_grad():
        probe = student.eval()(torch.zeros(1, 3, preprocess.input_size, preprocess.input_size))
    taps = student_taps(probe)
    spec = facts["spec"]
    source = {k: spec.get(k) for k in ("student", "method", "dataset", "seed", "epochs")}
    return TrainedRunTeacher(name, student, preprocess, file_fingerprint(path), taps, int(probe[LOGITS].shape[1]),
                             source)


def student_taps(outputs: Any) -> tuple[str, ...]:
    """The teacher taps a student's outputs give: logits, pooled (its embedding), feature_map, hidden.<i> in order."""
    taps = tuple(tap for tap in (LOGITS, POOLED, FEATURE_MAP) if tap == POOLED or tap in outputs)
    return taps + tuple(sorted((tap for tap in outputs if tap.startswith("hidden.")), key=lambda t: int(t[7:])))


_DECLARED: dict[str, tuple[str, ...]] = {}  # run teacher name -> its taps, for the card (declare_run)


def declare_run(name: str, path: Path) -> tuple[str, ...]:
    """Give the card of `name` the taps of the artifact's student (built and run on the meta device, no weights
    read), so a grid's checks see exactly what the teacher will give; returns them."""
    facts = artifact_facts(path)
    student = build_student(facts, "meta")
    size = int(facts["norm"]["size"])
    with torch.no_grad():
        outputs = student.eval()(torch.zeros(1, 3, size, size, device="meta"))
    _DECLARED[name] = student_taps(outputs)
    return _DECLARED[name]


_STAND_INS: dict[str, dict[str, Any]] = {}  # `bench plan`: a run not trained yet -> the facts of the one it will be


def declare_stand_in(name: str, student: str, hparams: dict[str, Any], size: int, num_classes: int) -> None:
    """`bench plan` of a two-stage file before its teacher stage ran: `name` stands for the run it will select, a
    random-init `student` (timed for the estimate, never trained from), with that student's taps on its card."""
    facts = {"spec": {"student": student, "hparams": hparams}, "norm": {"size": size, "mean": [0.5] * 3,
                                                                      "std": [0.25] * 3}}
    _STAND_INS[name] = {**facts, "num_classes": num_classes}
    with torch.no_grad():
        outputs = _student_at(facts, num_classes, "meta").eval()(torch.zeros(1, 3, size, size, device="meta"))
    _DECLARED[name] = student_taps(outputs)


def stand_in_teacher(name: str) -> TrainedRunTeacher:
    """The random-init stand-in declared for `name` (its speed is the trained run's; its outputs mean nothing)."""
    facts = _STAND_INS[name]
    student = _student_at(facts, facts["num_classes"], "cpu").eval()
    size = int(facts["norm"]["size"])
    preprocess = OwnSize(size, tuple(facts["norm"]["mean"]), tuple(facts["norm"]["std"]), "bilinear")
    return TrainedRunTeacher(name, student, preprocess, STAND_IN, _DECLARED[name], facts["num_classes"], {})


def describe_run(path: Path | None) -> dict[str, object]:
    """Params (trainable tensors of the artifact's student), embedding dim and input normalisation; no load."""
    if path is None:
        return {}
    facts = artifact_facts(Path(path))
    student = build_student(facts, "meta")
    norm = facts["norm"]
    return {"params": sum(p.numel() for p in student.parameters()), "embed_dim": int(student.embed_dim),
            "preprocess": Preprocess(int(norm["size"]), tuple(norm["mean"]), tuple(norm["std"]), "bilinear")}


def stand_in_facts(name: str) -> dict[str, object]:
    """describe() of a stand-in: its student's params and embedding dim, and its input size."""
    facts = _STAND_INS[name]
    student = _student_at(facts, facts["num_classes"], "meta")
    norm = facts["norm"]
    return {"params": sum(p.numel() for p in student.parameters()), "embed_dim": int(student.embed_dim),
            "preprocess": Preprocess(int(norm["size"]), tuple(norm["mean"]), tuple(norm["std"]), "bilinear")}


def resolve_run_name(name: str) -> Entry:
    """`run:<spec key prefix>` -> a teacher entry whose factory loads the artifact passed as its weights."""

    def factory(weights: str | None = None, *, allow_download: bool = False) -> Teacher:
        if not weights and name in _STAND_INS:
            return stand_in_teacher(name)
        if not weights:
            raise BenchError(f"teacher {name!r} is a trained run: name it in a grid or study file (resolved against "
                             f"--db) or give --weights {name}=ARTIFACT.safetensors")
        return load_trained_run(name, Path(weights))

    factory.__doc__ = "A trained run's student as a frozen teacher."
    describe = (lambda _path: stand_in_facts(name)) if name in _STAND_INS else describe_run
    return TEACHERS.make_entry(name, factory, TeacherCard("bench", _DECLARED.get(name, CARD_TAPS), describe=describe),
                               f"trained run {name.split(':', 1)[1]} as a teacher")


TEACHERS.add_prefix_resolver(PREFIX, resolve_run_name)
