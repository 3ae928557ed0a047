"""The tap vocabulary: names of what teachers give and students return, and how layered names are matched.

A tap is a named per-sample tensor. Teachers give taps (`features(images, taps)`); students return
outputs under the same names, so a method pairs them by name. Layered taps are `<family>.<i>`
(e.g. `hidden.3`, `attn.11`) and are matched by family; a teacher may declare them as `hidden.<i>`
and `expand_taps` spells them out over its depth. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

POOLED = "pooled"  # the teacher's pooled embedding (N, D): every teacher gives it
IMAGE_EMBED = "image_embed"  # an image-text teacher's image embedding in its joint space (N, E)
TEXT_EMBED = "text_embed"  # per-image caption embedding (the text side of the joint space)
FEATURE_MAP = "feature_map"  # a conv feature map (N, C, H, W)
TOKENS = "tokens"  # transformer tokens (N, T, D)
LOGITS = "logits"  # student class logits; as a teacher target, the probe's (or zero-shot head's) logits
EMBEDDING = "embedding"  # the student's embedding (N, D)
TEXT = "text"  # teacher family: the teacher can encode text
HIDDEN = "hidden"  # layered family: hidden.<i>
ATTN = "attn"  # layered family: attention probabilities attn.<i>
ATTN_SCORES = "attn_scores"  # layered family: pre-softmax attention scores attn_scores.<i>


def tap_family(name: str) -> str:
    """'hidden.3' -> 'hidden'; 'pooled' -> 'pooled' (layered outputs are matched by family)."""
    return name.split(".", 1)[0]


def indexed(names: Collection[str], family: str) -> list[int]:
    """Sorted layer indices i of the names `family.i`."""
    pattern = re.compile(rf"^{re.escape(family)}\.(\d+)$")
    return sorted(int(match.group(1)) for name in names if (match := pattern.match(name)))


def expand_taps(taps: Sequence[str], depth: int | None) -> list[str]:
    """Teacher tap names with patterns like 'hidden.<i>' or 'attn.*' expanded over `depth` blocks."""
    expanded: list[str] = []
    for tap in taps:
        if tap.endswith((".<i>", ".*", ".{i}")):
            expanded += [f"{tap_family(tap)}.{index}" for index in range(depth or 0)]
        else:
            expanded.append(tap)
    return expanded
