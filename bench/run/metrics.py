"""Evaluation metrics: top-k accuracy and COCO-protocol image-text retrieval recall."""

from __future__ import annotations

from collections.abc import Sequence

import torch

RECALL_KS = (1, 5, 10)
RETRIEVAL_COLUMNS = tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in RECALL_KS) + ("mean_recall",)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the k highest logits (k clipped to the class count)."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return float((top == labels.view(-1, 1)).any(dim=-1).float().mean())


def retrieval_recalls(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                      text_to_image: torch.Tensor, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """Recall@k both ways (fractions); an image is retrieved correctly by any of its captions.

    image_embeddings (N_img, E), text_embeddings (N_txt, E): compared by dot product (pass
    L2-normalised rows for cosine). text_to_image (N_txt,) gives each caption's image index.
    """
    similarity = image_embeddings.float() @ text_embeddings.float().t()  # (N_img, N_txt)
    text_to_image = text_to_image.long()
    # i2t: rank of the best correct caption = wrong captions scoring at least as high (ties count against)
    owns = text_to_image.view(1, -1) == torch.arange(len(image_embeddings)).view(-1, 1)
    best_correct = similarity.masked_fill(~owns, float("-inf")).max(dim=1).values
    i2t_rank = ((similarity >= best_correct.view(-1, 1)) & ~owns).sum(dim=1)
    # t2i: rank of the caption's own image = other images scoring at least as high
    own_score = similarity[text_to_image, torch.arange(len(text_to_image))]
    t2i_rank = (similarity.t() >= own_score.view(-1, 1)).sum(dim=1) - 1
    recalls = {}
    for k in ks:
        recalls[f"i2t_r{k}"] = float((i2t_rank < k).float().mean())
    for k in ks:
        recalls[f"t2i_r{k}"] = float((t2i_rank < k).float().mean())
    recalls["mean_recall"] = sum(recalls.values()) / len(recalls)
    return recalls


def flatten_captions(captions: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """All captions in order and the index of the image each belongs to."""
    texts = [text for group in captions for text in group]
    owners = torch.tensor([i for i, group in enumerate(captions) for _ in group], dtype=torch.long)
    return texts, owners


@torch.inference_mode()
def score_summary(record: object) -> str:
    """One-line score of a run record for progress output (accuracy or retrieval recall)."""
    if getattr(record, "mean_recall", None) is not None:
        return (f"mean_recall {record.mean_recall:.4f} i2t_r1 {record.i2t_r1:.4f} "  # type: ignore[attr-defined]
                f"t2i_r1 {record.t2i_r1:.4f} val {record.val_acc:.4f}")  # type: ignore[attr-defined]
    test_acc = getattr(record, "test_acc", None)
    test = f"test_acc {test_acc:.4f} " if test_acc is not None else ""  # search trials never see test
    return f"{test}val_acc {record.val_acc:.4f}"  # type: ignore[attr-defined]
