"""Shared names and constants, torch-free: what rows, Optuna attributes and units call things.

Every module that writes or reads one of these names imports it from here, so a name is defined once.
"""

from __future__ import annotations

# Splits of every dataset, in order.
SPLITS = ("train", "val", "test")

# Student kinds (StudentCard.kind): how a student gets its input.
HEAD = "head"  # takes teacher features; inference still needs the teacher backbone
STANDALONE = "standalone"  # takes images; inference needs no teacher

# Dataset tasks (DatasetCard.task): which task module scores a run.
CLASSIFICATION = "classification"
RETRIEVAL = "retrieval"

# Teacher modalities (TeacherCard.modality).
IMAGE = "image"
IMAGE_TEXT = "image-text"  # also encodes text (CLIP, BLIP): zero-shot references and retrieval

# The teacher-reference cell of every (teacher, dataset, data) setting, and the baseline method.
PROBE_METHOD = "teacher-probe"  # runs.method of the reference cell
PROBE_STUDENT = "linear-probe"  # runs.student of a probe reference
ZERO_SHOT_STUDENT = "zero-shot"  # runs.student of a zero-shot reference
PROBE_REFERENCE = "linear-probe"  # runs.teacher_reference of a probe reference
JOINT_SPACE_REFERENCE = "teacher-joint-space"  # runs.teacher_reference of a retrieval reference
FINETUNE_METHOD = "teacher-finetune"  # runs.method of a fine-tuned teacher's reference cell
FINETUNE_STUDENT = "fine-tuned"  # runs.student of that cell (the teacher itself, with a trained linear head)
FINETUNE_REFERENCE = "fine-tuned"  # runs.teacher_reference of that cell
FINETUNE_TARGETS = "finetune"  # runs.kd_targets of a run reading a fine-tuned teacher's logits
REFERENCE_METHODS = (PROBE_METHOD, FINETUNE_METHOD)  # methods of reference cells (not students)
UNLABELED = -1  # the training label of a transfer-set row (data.labeled_limit): no CE term reads it
BASELINE_METHOD = "scratch"  # what the report's gain columns compare against

# Optuna study user attributes.
KIND_ATTR = "bench_kind"  # "grid" or "study"
GRID_KIND = "grid"
SEARCH_KIND = "study"  # a `bench study` search: its trials ran on val only and never enter the matrix
SOURCE_ATTR = "source_file"  # the grid file a grid came from (report provenance)
WEIGHTS_ATTR = "weights"  # TEACHER=PATH weights a grid's workers use
CONFIG_ATTR = "bench_config"  # a study's validated configuration (workers rebuild the search from it)
TRIALS_ATTR = "n_trials"  # a study's trial budget (workers stop when it is spent)
FINAL_SUFFIX = "/final"  # the study (and runs.study) of a search's best-trial re-runs on test

# Optuna trial user attributes: the cell a trial runs and the worker that runs it.
SPEC_ATTR = "spec"  # ExperimentSpec.to_dict() of the trial's cell
SPEC_KEY_ATTR = "spec_key"
LABEL_ATTR = "label"  # the progress line's name: the hparams that tell a grid's cells apart
WORKER_ATTR = "worker"  # host:pid
WORKER_JOB_ATTR = "worker_job"  # the SLURM job (array job_task) whose worker runs the cell, if any
WORKER_PROCESS_ATTR = "worker_process"  # enough to tell later that the worker's process on this machine died
DATA_SEED_FIELDS = ("split_seed", "labeled_seed")  # data.* seeds a grid may vary like seeds (seed_axes)
TEACHER_VIEW_FIELDS = ("teacher_views", "teacher_view_count", "teacher_view_seed", "teacher_view_topk")  # data.*
