"""Retrieval recall and top-k against hand computations; joint-space methods; grid checks for image-text data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config.grid import load_grid
from bench.core.errors import BenchError
from bench.core.registries import METHODS
from bench.methods.base import MethodContext
from bench.run.metrics import flatten_captions, retrieval_recalls, topk_accuracy

# rows: images 0..2, columns: texts 0..4; texts 0, 1 belong to image 0, text 2 to image 1, texts 3, 4 to image 2
SIMILARITY = torch.tensor([
    [0.9, 0.1, 0.8, 0.2, 0.3],
    [0.5, 0.6, 0.4, 0.7, 0.1],
    [0.2, 0.3, 0.1, 0.05, 0.25],
])
OWNERS = torch.tensor([0, 0, 1, 2, 2])


def test_recall_matches_hand_computation() -> None:
    # i2t ranks of the best own caption: image 0 -> 0, image 1 -> 3 (0.5, 0.6, 0.7 beat 0.4), image 2 -> 1 (0.3 > 0.25)
    # t2i ranks of the own image: t0 -> 0, t1 -> 2, t2 -> 1, t3 -> 2, t4 -> 1
    recalls = retrieval_recalls(torch.eye(3), SIMILARITY.t(), OWNERS, ks=(1, 2, 10))
    assert recalls["i2t_r1"] == pytest.approx(1 / 3) and recalls["i2t_r2"] == pytest.approx(2 / 3)
    assert recalls["t2i_r1"] == pytest.approx(1 / 5) and recalls["t2i_r2"] == pytest.approx(3 / 5)
    assert recalls["i2t_r10"] == 1.0 and recalls["t2i_r10"] == 1.0
    expected_mean = (1 / 3 + 2 / 3 + 1 + 1 / 5 + 3 / 5 + 1) / 6
    assert recalls["mean_recall"] == pytest.approx(expected_mean)
    standard = retrieval_recalls(torch.eye(3), SIMILARITY.t(), OWNERS)
    assert list(standard) == ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean_recall"]


def test_any_caption_of_an_image_counts_and_ties_count_against() -> None:
    # image 0: its first caption ranks last, its second first -> a hit; text 0 prefers image 1 -> a t2i miss
    recalls = retrieval_recalls(torch.eye(2), torch.tensor([[0.1, 0.5], [0.9, 0.2], [0.3, 0.8]]),
                                torch.tensor([0, 0, 1]), ks=(1,))
    assert recalls["i2t_r1"] == 1.0 and recalls["t2i_r1"] == pytest.approx(2 / 3)
    collapsed = retrieval_recalls(torch.ones(4, 3), torch.ones(8, 3), torch.arange(8) // 2, ks=(1,))
    assert collapsed["i2t_r1"] == 0.0 and collapsed["t2i_r1"] == 0.0  # a collapsed embedding earns nothing


def test_flatten_captions_and_topk() -> None:
    texts, owners = flatten_captions([("a", "b"), ("c",), ("d", "e", "f")])
    assert texts == ["a", "b", "c", "d", "e", "f"] and owners.tolist() == [0, 0, 1, 2, 2, 2]
    logits = torch.tensor([[0.1, 0.5, 0.3, 0.2], [0.9, 0.05, 0.03, 0.02], [0.1, 0.2, 0.3, 0.4]])
    labels = torch.tensor([2, 2, 0])
    assert topk_accuracy(logits, labels, 1) == 0.0
    assert topk_accuracy(logits, labels, 2) == pytest.approx(1 / 3)  # row 0: 0.5, 0.3 -> class 2 in
    assert topk_accuracy(logits, labels, 3) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, labels, 5) == 1.0  # k clipped to the 4 classes


def test_joint_cosine_hand_value_and_contrastive_trains() -> None:
    method = METHODS.get("joint-cosine")(MethodContext(1, 2, 2), {})
    with torch.no_grad():
        method.projection.weight.copy_(torch.eye(2))
        method.projection.bias.zero_()
    student = {"embedding": torch.tensor([[1.0, 0.0], [1.0, 1.0]])}
    teacher = {"image_embed": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}
    expected = ((1 - 0.0) + (1 - 2**-0.5)) / 2
    assert float(method(student, teacher, torch.arange(2))["cos"].detach()) == pytest.approx(expected, rel=1e-6)

    torch.manual_seed(0)
    contrastive = METHODS.get("joint-contrastive")(MethodContext(1, 8, 6), {"itc_temperature": 0.1})
    embeddings = torch.randn(16, 6, requires_grad=True)
    targets = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    optimizer = torch.optim.AdamW([embeddings, *contrastive.parameters()], lr=0.05)
    totals = []
    for _ in range(60):
        terms = contrastive({"embedding": embeddings}, {"image_embed": targets, "text_embed": targets}, None)
        assert set(terms) == set(contrastive.term_weights()) == {"cos", "itc"}
        loss = contrastive.total(terms)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(float(loss.detach()))
    assert totals[-1] < 0.3 * totals[0]
    assert contrastive.num_params() == 6 * 8 + 8


def grid_file(tmp_path: Path, teacher: str, method: str, dataset: str) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(f"teacher: {teacher}\nstudent: projection\nmethod: {method}\ndataset: {dataset}\n")
    return path


def test_grid_rejects_methods_that_do_not_fit_the_data(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="method 'kd' does not fit dataset 'coco-captions'"):
        load_grid(grid_file(tmp_path, "effnet-lite0", "kd", "coco-captions"))
    with pytest.raises(BenchError, match=r"needs teacher outputs \['image_embed'\] that 'effnet-lite0'"):
        load_grid(grid_file(tmp_path, "effnet-lite0", "joint-cosine", "coco-captions"))
    with pytest.raises(BenchError, match="method 'joint-cosine' does not fit dataset 'digits'"):
        from tests.support.fakes import registered

        with registered() as teacher:
            load_grid(grid_file(tmp_path, teacher, "joint-cosine", "digits"))
