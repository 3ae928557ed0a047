"""Known pretraining overlap: which teacher's training data holds (or is the source of) a dataset's test split.

A small, cited table read by `bench plan` and the report: a result in an overlapping cell is not a held-out one.
Only documented overlap is listed. Not listed, on purpose: CLIP (`clip-*`, OpenAI's WIT-400M is unreleased web
data, so no overlap can be stated either way) and `siglip-base` (WebLI, unreleased); `dinov2-*` (LVD-142M was
deduplicated against the evaluation sets' test images, Oquab et al. 2023, sec. 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

IMAGENET_SOURCE = ("Tiny ImageNet's 200 classes and its images are drawn from ImageNet (Le & Yang 2015, CS231n); "
                   "which ImageNet split each image came from is not published")


@dataclass(frozen=True)
class Overlap:
    """One teacher x dataset pair whose teacher saw data of the dataset's test split (or its source)."""

    teacher: str
    dataset: str
    saw: str  # what the teacher was trained on
    why: str  # how that meets the test split
    source: str  # where the two facts are stated
    unless: Mapping[str, object] = field(default_factory=dict)  # data config values under which it does not apply

    def applies(self, data_config: Mapping[str, object] | None) -> bool:
        """Whether a setting with this data config meets the overlap (`unless` values exempt it)."""
        config = data_config or {}
        return not self.unless or any(config.get(key) != value for key, value in self.unless.items())

    def text(self) -> str:
        """One line: what the teacher saw, why it meets the test split, and the source."""
        return f"{self.teacher} saw {self.saw}; {self.why} (source: {self.source})"


OVERLAPS: tuple[Overlap, ...] = (
    Overlap("beit-base", "tiny-imagenet", "ImageNet-22k and ImageNet-1k images with labels (supervised fine-tune)",
            IMAGENET_SOURCE, "timm beit_base_patch16_224.in22k_ft_in22k_in1k; Bao et al. 2022, BEiT, sec. 3"),
    Overlap("beitv2-base", "tiny-imagenet", "ImageNet-1k images with labels (supervised fine-tune)",
            IMAGENET_SOURCE, "timm beitv2_base_patch16_224.in1k_ft_in1k; Peng et al. 2022, BEiT v2, sec. 4"),
    Overlap("effnet-lite0", "tiny-imagenet", "ImageNet-1k images with labels (supervised)",
            IMAGENET_SOURCE, "timm tf_efficientnet_lite0.in1k; Tan & Le 2019, EfficientNet"),
    Overlap("dino-vits16", "tiny-imagenet", "ImageNet-1k train images without labels (self-supervised)",
            IMAGENET_SOURCE, "timm vit_small_patch16_224.dino; Caron et al. 2021, DINO, sec. 4.1"),
    Overlap("dino-vitb16", "tiny-imagenet", "ImageNet-1k train images without labels (self-supervised)",
            IMAGENET_SOURCE, "timm vit_base_patch16_224.dino; Caron et al. 2021, DINO, sec. 4.1"),
    Overlap("blip-base", "coco-captions",
            "COCO images and captions (pretraining on 14M images incl. COCO, then fine-tuned for retrieval on "
            "the COCO Karpathy train + restval split)",
            "without the Karpathy split the test split is val2017, which is drawn from val2014, about three "
            "quarters of which is Karpathy restval; set data.coco_split: karpathy to test on the held-out "
            "Karpathy test images",
            "HF Salesforce/blip-itm-base-coco; Li et al. 2022, BLIP, sec. 5.1; Karpathy & Fei-Fei 2015 split",
            unless={"coco_split": "karpathy"}),
)


def overlaps(teacher: str, dataset: str, data_config: Mapping[str, object] | None = None) -> list[Overlap]:
    """The known overlaps of one teacher x dataset under a data config (empty when none is known)."""
    return [o for o in OVERLAPS if o.teacher == teacher and o.dataset == dataset and o.applies(data_config)]
