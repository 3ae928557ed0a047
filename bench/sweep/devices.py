"""Which device each local worker gets: K workers per GPU (`--workers-per-device`), round-robin over the GPUs this
process sees, each child pinned by its own `CUDA_VISIBLE_DEVICES`; torch-free, so it is a pure function to test."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import BenchError


@dataclass(frozen=True)
class WorkerDevice:
    """One local worker's device: `device` as it names it, and the CUDA_VISIBLE_DEVICES its process gets (None:
    leave the environment as it is, a CPU worker)."""

    device: str
    visible: str | None = None


def visible_gpus(visible_env: str | None, count: int) -> list[str]:
    """The ids of the GPUs this process sees, as CUDA_VISIBLE_DEVICES names them (indices, GPU-/MIG- UUIDs): the
    variable's first `count` entries when it is set, else 0..count-1. A child given one of these sees that GPU."""
    if visible_env is None:
        return [str(index) for index in range(count)]
    return [item.strip() for item in visible_env.split(",") if item.strip()][:count]


def worker_devices(workers: int | None, per_device: int, device: str, visible_env: str | None,
                   gpu_count: int) -> list[WorkerDevice]:
    """Each local worker's device. On CUDA the workers go round-robin over the GPUs (device "cuda:N": that GPU
    only), at most `per_device` per GPU, and `workers` defaults to GPUs x `per_device`; each child sees only its
    GPU, as "cuda". On the CPU every worker keeps `device`, `workers` defaults to 1 and `per_device` must be 1."""
    if per_device < 1:
        raise BenchError(f"--workers-per-device {per_device}: must be at least 1")
    if workers is not None and workers < 1:
        raise BenchError(f"--jobs/--workers {workers}: must be at least 1")
    cuda = device.startswith("cuda") or (device == "auto" and gpu_count > 0)
    if not cuda:
        if per_device > 1:
            raise BenchError(f"--workers-per-device {per_device}: packs workers on CUDA GPUs and --device {device} "
                             "runs on the CPU; set the CPU's workers with --jobs/--workers")
        return [WorkerDevice(device)] * (workers or 1)
    gpus = visible_gpus(visible_env, gpu_count)
    if not gpus:
        raise BenchError(f"--device {device}: no CUDA GPU is visible to this process (CUDA_VISIBLE_DEVICES="
                         f"{visible_env!r}); use --device cpu")
    if ":" in device:
        index = device.split(":", 1)[1]
        if not index.isdigit() or int(index) >= len(gpus):
            raise BenchError(f"--device {device}: this process sees {len(gpus)} GPU(s), cuda:0 to cuda:{len(gpus) - 1}")
        gpus = [gpus[int(index)]]
    workers = len(gpus) * per_device if workers is None else workers
    if workers > len(gpus) * per_device:
        raise BenchError(f"--jobs/--workers {workers}: {len(gpus)} GPU(s) x --workers-per-device {per_device} take "
                         f"at most {len(gpus) * per_device}; raise --workers-per-device or start fewer workers")
    return [WorkerDevice("cuda", gpus[index % len(gpus)]) for index in range(workers)]


def cuda_gpu_count(device: str) -> int:
    """How many CUDA GPUs this process sees (0 for --device cpu, without importing torch)."""
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
