"""Artifacts: every done run's trained student as a safetensors file in an Optuna artifact store, and back.

`ArtifactStore.save` writes a run's tensors (bench/run/kept.py) atomically before its row is stored and returns
the row's artifact_path and artifact_sha256; with an Optuna trial it goes through `optuna.artifacts.upload_artifact`
so optuna-dashboard lists the file under the trial. `--keep best` keeps one file per setting (every spec field
but the seed) in a study: the best val score. `load_run` reads a row back into a fresh student (checking the
file's sha256 first, never retraining) and `evaluate_run` recomputes its stored metric (`bench eval`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from bench.core.errors import BenchError
from bench.run.kept import FINETUNE, METHOD_PREFIX, PROBE, STUDENT, STUDENT_PREFIX, TEACHER, ZERO_SHOT, Kept
from bench.store.records import RunRecord

ARTIFACTS_ENV = "BENCH_ARTIFACTS"  # the default store of a server database (every worker must see the same one)
SHARED_DEFAULT = Path("~/.cache/distill-bench/artifacts")
SETTING_FIELDS = ("teacher", "student", "method", "dataset", "epochs")  # with hparams and data: all but the seed


def default_artifact_dir(database_url: str) -> Path:
    """`<SQLite file's directory>/artifacts`; for a server database $BENCH_ARTIFACTS or ~/.cache/... (shared)."""
    from bench.store.session import sqlite_path

    path = sqlite_path(database_url)
    if path is not None:
        return path.parent / "artifacts"
    if database_url.startswith("sqlite"):
        return Path.cwd() / "artifacts"
    return Path(os.environ.get(ARTIFACTS_ENV) or SHARED_DEFAULT).expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, body: BinaryIO) -> None:
    """Write to a temp file beside `path`, flush to disk, then rename: a reader never sees half a file."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in iter(lambda: body.read(1 << 20), b""):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def optuna_store(directory: Path) -> Any:
    """Optuna's FileSystemArtifactStore, writing each file atomically (temp + rename)."""
    from optuna.artifacts import FileSystemArtifactStore

    class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
        def write(self, artifact_id: str, content_body: BinaryIO) -> None:
            _atomic_write(self._get_filepath(artifact_id), content_body)

    return AtomicFileSystemArtifactStore(directory)


@dataclass(frozen=True)
class ArtifactStore:
    """Where a sweep's artifacts go and which it keeps (all, best per setting, none)."""

    directory: Path
    keep: str = "all"

    @property
    def keeps_any(self) -> bool:
        return self.keep != "none"

    def save(self, kept: Kept, record: RunRecord, engine: Any, trial: Any = None, storage: Any = None) -> dict:
        """Write the file (before the row is stored) and return the row's artifact fields ({} if not kept)."""
        from safetensors.torch import save

        if not self.keeps_any or (self.keep == "best" and not _beats_kept(engine, record)):
            return {}
        self.directory.mkdir(parents=True, exist_ok=True)
        body = save(kept.tensors, metadata=kept.metadata)
        name = f"{record.spec_key}.safetensors"
        if trial is None:
            path = self.directory / name
            _atomic_write(path, _Bytes(body))
        else:
            from optuna.artifacts import upload_artifact

            with tempfile.TemporaryDirectory(dir=self.directory, prefix=".staging-") as staging:
                (Path(staging) / name).write_bytes(body)
                artifact_id = upload_artifact(artifact_store=optuna_store(self.directory),
                                              file_path=str(Path(staging) / name), study_or_trial=trial,
                                              storage=storage, mimetype="application/octet-stream")
            path = self.directory / artifact_id
        return {"artifact_path": str(path.resolve()), "artifact_sha256": hashlib.sha256(body).hexdigest()}

    @staticmethod
    def remove(fields: Mapping[str, Any]) -> None:
        """Delete a file `save` wrote whose row was not stored (a storage error, another worker stored it)."""
        if fields.get("artifact_path"):
            Path(fields["artifact_path"]).unlink(missing_ok=True)

    def after_stored(self, record: RunRecord, engine: Any) -> None:
        """--keep best: a stored run that kept its file is its setting's best; drop the others' files and paths."""
        if self.keep != "best" or record.artifact_path is None:
            return
        from sqlalchemy import update

        from bench.store.models import Run
        from bench.store.session import session_scope

        older = [row for row in _setting_rows(engine, record) if row.spec_key != record.spec_key]
        for row in older:
            Path(row.artifact_path).unlink(missing_ok=True)
        if older:
            with session_scope(engine) as session:
                session.execute(update(Run).where(Run.spec_key.in_([row.spec_key for row in older]))
                                .values(artifact_path=None, artifact_sha256=None))


class _Bytes:
    """bytes as a file object for _atomic_write."""

    def __init__(self, body: bytes) -> None:
        self.body, self.offset = body, 0

    def read(self, size: int) -> bytes:
        chunk = self.body[self.offset : self.offset + size]
        self.offset += len(chunk)
        return chunk


def _setting_rows(engine: Any, record: RunRecord) -> list[Any]:
    """Done rows of the record's study and setting that still hold an artifact (spec_key, path, val_acc)."""
    from sqlalchemy import select

    from bench.store.models import Run
    from bench.store.session import session_scope

    query = select(Run.spec_key, Run.artifact_path, Run.val_acc, Run.hparams, Run.data_config).where(
        Run.study == record.study, Run.status == "done", Run.artifact_path.is_not(None),
        *(getattr(Run, name) == getattr(record, name) for name in SETTING_FIELDS))
    with session_scope(engine) as session:
        rows = session.execute(query).all()
    return [row for row in rows if row.hparams == record.hparams and row.data_config == record.data_config]


def _score(value: float | None) -> float:
    return float("-inf") if value is None else float(value)


def _beats_kept(engine: Any, record: RunRecord) -> bool:
    """Whether the record's val score is above every kept run of its setting (a tie keeps the older file)."""
    return all(_score(record.val_acc) > _score(row.val_acc) for row in _setting_rows(engine, record)
               if row.spec_key != record.spec_key)


# Reading a run back.

@dataclass
class LoadedRun:
    """A stored run rebuilt from its artifact: the row, its spec, the student (and method) with the kept weights.

    `parts` is None for a reference cell (probe, zero-shot, fine-tuned teacher, retrieval teacher): its tensors
    are in `tensors` and what they are in `kind`.
    """

    record: RunRecord
    spec: Any  # ExperimentSpec
    parts: Any  # RunParts | None
    teacher: Any  # Teacher
    data: Any  # DatasetSplits
    bench: Any  # Workbench
    kind: str = STUDENT
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def find_run(database_url: str, run_ref: str) -> RunRecord:
    """The row a run id or a unique spec_key prefix names (resolved as `bench show` does); else a one-line
    BenchError."""
    from bench.report.runs import find_run as find_row
    from bench.store.models import Run
    from bench.store.results import _to_record
    from bench.store.session import get_engine, session_scope

    run_id = int(find_row(database_url, run_ref)["id"])
    with session_scope(get_engine(database_url)) as session:
        return _to_record(session.get(Run, run_id))


def verified_path(record: RunRecord) -> Path:
    """The run's artifact file, present and with the sha256 its row holds; else a one-line BenchError."""
    fix = "re-run the cell to rebuild it (delete its row from `runs`, then `bench run` its grid again)"
    if record.status != "done" or not record.artifact_path:
        raise BenchError(f"run {record.spec_key[:12]} ({record.status}) has no artifact (failed runs and runs "
                         f"left out by --keep best|none keep none); {fix}")
    path = Path(record.artifact_path)
    if not path.is_file():
        raise BenchError(f"artifact {path} of run {record.spec_key[:12]} is missing; {fix}")
    found = sha256_file(path)
    if found != record.artifact_sha256:
        raise BenchError(f"artifact {path} of run {record.spec_key[:12]} has changed (sha256 {found[:12]}, the row "
                         f"says {str(record.artifact_sha256)[:12]}); {fix}")
    return path


def _study_weights(database_url: str, study_name: str) -> dict[str, str]:
    """The teacher weights paths the run's study was made with (grid user attrs or the search config)."""
    from bench.core.names import CONFIG_ATTR, WEIGHTS_ATTR

    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        attrs = optuna.load_study(study_name=study_name, storage=database_url).user_attrs
    except Exception:  # noqa: BLE001 - no Optuna study (a row written by hand): the registry's default weights
        return {}
    return dict(attrs.get(WEIGHTS_ATTR) or (attrs.get(CONFIG_ATTR) or {}).get("weights") or {})


def load_run(database_url: str, run_ref: str, context: Any = None,
             weights: Mapping[str, str] | None = None) -> LoadedRun:
    """A stored run with its artifact's weights loaded into a freshly built student (and method); never trains."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from bench.core.spec import ExperimentSpec
    from bench.data.splits import DataConfig
    from bench.run.context import RunContext
    from bench.run.parts import build_parts
    from bench.run.workbench import Workbench

    record = find_run(database_url, run_ref)
    path = verified_path(record)
    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata() or {})
    tensors = load_file(str(path))
    spec = ExperimentSpec.from_dict(json.loads(metadata["spec"]))
    if spec.key != record.spec_key:
        raise BenchError(f"artifact {path} holds spec {spec.key[:12]}, not run {record.spec_key[:12]}; re-run the cell")
    bench = Workbench(context or RunContext(), {**_study_weights(database_url, record.study), **(weights or {})})
    data = bench.data(spec.dataset, DataConfig(**spec.data_dict))
    teacher = bench.teacher(spec.teacher)
    kind = metadata.get("kind", STUDENT)
    parts = None
    if kind == STUDENT:
        torch.manual_seed(spec.seed)  # as run_spec builds them (every weight is then replaced by the artifact's)
        parts = build_parts(spec.student, spec.method, spec.hparams_dict, teacher, data)
        parts.student.load_state_dict(_under(tensors, STUDENT_PREFIX))
        method_state = _under(tensors, METHOD_PREFIX)
        if method_state:
            parts.method.load_state_dict(method_state)
        parts.student.to(bench.device).eval()
        parts.method.to(bench.device).eval()
        if parts.input_tap is not None and data.config.teacher_reference == "finetune":
            _require_finetune_cached(bench, teacher, data, spec)
            teacher = finetuned_teacher(database_url, spec, teacher, data)
    return LoadedRun(record, spec, parts, teacher, data, bench, kind, tensors, metadata)


def _require_finetune_cached(bench: Any, teacher: Any, data: Any, spec: Any) -> None:
    """A head student of a finetune setting is scored on the fine-tune's cached features: never re-train them."""
    from bench.teacher_outputs.cache import cache_key
    from bench.teacher_outputs.finetune import finetune_config, finetune_key

    parts = finetune_key(teacher, data, finetune_config(data.config, len(data.train)))
    key = cache_key(parts)
    if bench.cache.load(key, parts=parts) is None:  # another key's entry under this name is not the fine-tune
        raise BenchError(f"run {spec.key[:12]} reads the fine-tuned {spec.teacher!r} features, which are not in the "
                         f"feature cache {bench.cache.path(key).parent}; pass the sweep's --cache-dir (bench eval "
                         "never re-trains the teacher)")


def finetuned_teacher(database_url: str, spec: Any, teacher: Any, data: Any) -> Any:
    """The fine-tuned teacher a head student of a `teacher_reference: finetune` setting read its features from:
    the setting's reference run's artifact (sha256 checked) loaded into a copy of the teacher; never re-trained."""
    from safetensors.torch import load_file

    from bench.core.spec import probe_spec
    from bench.teacher_outputs.finetune import apply_state

    reference_key = probe_spec(spec.teacher, spec.dataset, spec.data_dict).key
    try:
        reference = find_run(database_url, reference_key)
    except BenchError as error:
        raise BenchError(f"run {spec.key[:12]} reads the fine-tuned {spec.teacher!r}, whose reference run "
                         f"{reference_key[:12]} is not stored; re-run the grid's teacher-finetune cell") from error
    model, _ = apply_state(teacher, load_file(str(verified_path(reference))), data.num_classes)
    return model.eval()


def _under(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}


def stored_metric(loaded: LoadedRun, split: str) -> float | None:
    """The row's score of the split: test accuracy (or mean recall), val score; none is stored for train."""
    from bench.core.names import RETRIEVAL
    from bench.core.registries import DATASETS

    if split == "val":
        return loaded.record.val_acc
    if split == "test":
        retrieval = DATASETS.entry(loaded.spec.dataset).card.task == RETRIEVAL
        return loaded.record.mean_recall if retrieval else loaded.record.test_acc
    return None


def evaluate_run(loaded: LoadedRun, split: str) -> float:
    """Recompute the run's metric on a split from its artifact: accuracy, or mean recall for retrieval."""
    from bench.core.names import RETRIEVAL
    from bench.core.registries import DATASETS

    if DATASETS.entry(loaded.spec.dataset).card.task == RETRIEVAL:
        return _retrieval_metric(loaded, split)
    labels = torch.from_numpy(loaded.data.split(split).labels)
    from bench.teacher_outputs.probe import accuracy

    return accuracy(_class_logits(loaded, split), labels)


def _class_logits(loaded: LoadedRun, split: str) -> torch.Tensor:
    """The split's class logits from the kept student or reference head, as the run computed them."""
    from bench.core.taps import IMAGE_EMBED, POOLED

    bench, spec, data, tensors = loaded.bench, loaded.spec, loaded.data, loaded.tensors
    if loaded.kind == STUDENT:
        from bench.run.fast import TrainOptions
        from bench.run.run_spec import student_inputs
        from bench.run.train import predict_logits

        outputs = bench.teacher_outputs(spec.teacher, data, loaded.parts.feature_taps)
        inputs = student_inputs(loaded.parts, data, outputs)
        options = TrainOptions.from_config(data.config)  # bf16 runs scored under autocast: eval does the same
        return predict_logits(loaded.parts.student, inputs[split], bench.device, options=options)
    if loaded.kind == PROBE:
        from bench.teacher_outputs.probe import probe_logits

        return probe_logits(tensors, bench.teacher_outputs(spec.teacher, data).features[split][POOLED])
    if loaded.kind == ZERO_SHOT:
        from bench.teachers.zero_shot import ZeroShotHead

        head = ZeroShotHead(tensors["class_embeds"], float(tensors["scale"]), float(tensors["bias"]), "")
        return head.logits(bench.teacher_outputs(spec.teacher, data, (IMAGE_EMBED,)).features[split][IMAGE_EMBED])
    if loaded.kind == FINETUNE:
        from bench.teacher_outputs.finetune import _evaluate, apply_state

        model, head = apply_state(loaded.teacher, tensors, data.num_classes)
        preprocess = loaded.teacher.preprocess.with_size(data.config.image_size)
        return _evaluate(model, head, data, preprocess, bench.device, [split])[0][split]
    raise BenchError(f"artifact {loaded.record.artifact_path} is of kind {loaded.kind!r}, which bench eval cannot "
                     "score on a classification dataset; re-run the cell")


def _retrieval_metric(loaded: LoadedRun, split: str) -> float:
    """Mean recall of the split in the teacher's joint space (the student's, or the teacher's own)."""
    from bench.run.retrieval import RetrievalTask
    from bench.run.run_spec import student_inputs

    if split == "train":
        raise BenchError("bench eval --split train: retrieval runs are scored on val and test only; "
                         "use --split val or test")
    task = RetrievalTask.prepare(loaded.bench, loaded.spec, loaded.data, loaded.teacher)
    if loaded.kind == TEACHER:
        return (task.teacher_val if split == "val" else task.teacher_test)["mean_recall"]
    parts = loaded.parts
    outputs = loaded.bench.teacher_outputs(loaded.spec.teacher, loaded.data, parts.feature_taps)
    return task.recalls(parts, student_inputs(parts, loaded.data, outputs), split)["mean_recall"]
