"""Write a deployable model (bench/deploy/model.py) as safetensors, TorchScript or ONNX; check the file vs PyTorch.

safetensors: the model's state dict (every tensor, shared ones written once each) plus string metadata: the format
tag, the input shape (batch -1), the preprocessing (size, mean, std, interpolation), the teacher tap a head
student reads and whether the output is a joint-space embedding; the caller adds the run's spec (teacher, student,
method, hparams, data config), which with bench/run/parts.py `build_parts` rebuilds the same module to load into.
TorchScript: torch.jit.trace of the module, re-loaded and compared. ONNX: torch.onnx.export (dynamo exporter, a
dynamic batch axis), then run in onnxruntime on the example batch. A file whose outputs differ from PyTorch's by
EXPORT_TOLERANCE or more is deleted and the export raises a BenchError.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.deploy.model import Deployable

FORMATS = ("safetensors", "torchscript", "onnx")
Format = Literal["safetensors", "torchscript", "onnx"]
EXPORT_TOLERANCE = 1e-4
FORMAT_TAG = "distill-bench-deployable/1"


def export_model(model: nn.Module, fmt: Format, out: Path, example: torch.Tensor,
                 metadata: Mapping[str, str] | None = None) -> float:
    """Write `model` to `out` in `fmt`; return the max abs difference of the re-loaded file's outputs on `example`."""
    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt!r} is not an export format; use one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = example.detach().float().cpu()
    with torch.inference_mode():
        expected = model(example)
    writers = {"safetensors": _safetensors, "torchscript": _torchscript, "onnx": _onnx}
    try:
        diff = writers[fmt](model, out, example, expected, dict(metadata or {}))
    except BenchError:
        out.unlink(missing_ok=True)
        raise
    if not diff < EXPORT_TOLERANCE:
        out.unlink(missing_ok=True)
        raise BenchError(f"the {fmt} export of {out.name} differs from PyTorch by {diff:.3g} (max abs, limit "
                         f"{EXPORT_TOLERANCE}) on the example batch; nothing was written")
    return diff


def model_metadata(model: nn.Module, example: torch.Tensor, output: torch.Tensor) -> dict[str, str]:
    """What a reader needs to feed the model and read its output (plus the preprocessing baked into it)."""
    meta = {"format": FORMAT_TAG, "input_shape": json.dumps([-1, *example.shape[1:]]),
            "input_range": "[0, 1] float32 RGB at the dataset's native size (greyscale repeated to 3 channels)",
            "output_shape": json.dumps([-1, *output.shape[1:]])}
    if isinstance(model, Deployable):
        normalise = model.normalise
        meta.update({"image_size": str(normalise.size), "interpolation": normalise.mode,
                     "mean": json.dumps(normalise.mean.flatten().tolist()),
                     "std": json.dumps(normalise.std.flatten().tolist()),
                     "teacher_tap": model.tap or "", "teacher": getattr(model.backbone, "name", "") or "",
                     "output": "joint-space image embedding" if model.joint is not None else "class logits"})
    return meta


def _safetensors(model: nn.Module, out: Path, example: torch.Tensor, expected: torch.Tensor,
                 metadata: dict[str, str]) -> float:
    """State dict + metadata; re-loaded into the same module (strict) to check it is complete."""
    from safetensors.torch import load_file, save_file

    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    save_file(state, str(out), metadata={**model_metadata(model, example, expected), **metadata})
    loaded = load_file(str(out))
    backup = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    try:
        model.load_state_dict(loaded, strict=True)
        with torch.inference_mode():
            return _max_diff(model(example), expected)
    finally:
        model.load_state_dict(backup)


def _torchscript(model: nn.Module, out: Path, example: torch.Tensor, expected: torch.Tensor,
                 metadata: dict[str, str]) -> float:
    """torch.jit.trace (the preprocessing branch is fixed to the example's size), saved and re-loaded."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the size check and the API
        traced = torch.jit.trace(model, example, check_trace=False)
        files = {"metadata.json": json.dumps({**model_metadata(model, example, expected), **metadata})}
        torch.jit.save(traced, str(out), _extra_files=files)
        loaded = torch.jit.load(str(out), map_location="cpu")
    with torch.inference_mode():
        return _max_diff(loaded(example), expected)


def _onnx(model: nn.Module, out: Path, example: torch.Tensor, expected: torch.Tensor,
          metadata: dict[str, str]) -> float:
    """torch.onnx.export with a dynamic batch axis, then onnxruntime on the example batch."""
    import onnx
    import onnxruntime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(out), input_names=["images"], output_names=["output"],
                              dynamo=True, dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
                              external_data=False, verbose=False)
        except Exception as error:  # noqa: BLE001 - an operator ONNX lacks is a limit of this model, said in one line
            raise BenchError(f"this model cannot be exported to ONNX: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}; try --format torchscript") from None
    proto = onnx.load(str(out))
    for key, value in {**model_metadata(model, example, expected), **metadata}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": example.numpy()})
    return _max_diff(torch.from_numpy(got), expected)


def _max_diff(got: torch.Tensor, expected: torch.Tensor) -> float:
    if got.shape != expected.shape:
        return float("inf")
    return float((got.float() - expected.float()).abs().max())


def best_run(db_url: str, where: str) -> str:
    """The id of the best done student run matching `where` (highest test accuracy, else mean recall).

    The condition goes into one SELECT that bench/store/sqlcheck.py checks and bench/store/sql.py runs on a read-only
    connection, exactly as `bench sql` does: nothing in it can write.
    """
    from bench.core.names import REFERENCE_METHODS
    from bench.store.sql import read_only_query

    references = ", ".join(f"'{name}'" for name in REFERENCE_METHODS)
    query = (f"SELECT id FROM runs WHERE status = 'done' AND method NOT IN ({references}) AND ({where}) "
             "ORDER BY COALESCE(test_acc, mean_recall) DESC, id LIMIT 1")
    _, rows = read_only_query(db_url, query)
    if not rows:
        raise BenchError(f"--where {where!r}: no done student run matches; see `bench runs --where ...`")
    return str(rows[0][0])


def export_run(db_url: str, run_ref: str, fmt: Format, out: Path, batch: int = 64) -> float:
    """Export a stored run's student as a deployable model (its artifact's weights, never retrained), checked
    against PyTorch on up to `batch` of its real test images; the file's metadata names the run and its spec."""
    from bench.artifacts.store import load_run
    from bench.deploy.model import images_to_input
    from bench.run.cost import deployable_for_run

    loaded = load_run(db_url, run_ref)
    if loaded.parts is None:
        raise BenchError(f"run {run_ref!r} is the {loaded.record.method} reference cell, not a trained student; "
                         "bench export writes student runs (see `bench runs`)")
    model = deployable_for_run(loaded.parts, loaded.teacher, loaded.data)
    example = images_to_input(loaded.data.test.images[:batch])
    metadata = {"spec": json.dumps(loaded.spec.to_dict(), sort_keys=True), "spec_key": loaded.record.spec_key,
                "test_acc": str(loaded.record.test_acc)}
    return export_model(model, fmt, out, example, metadata)
