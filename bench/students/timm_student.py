"""`timm:<model_name>`: any timm model as a standalone student (randomly initialised, never downloaded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bench.core.cards import StudentCard
from bench.core.errors import BenchError, UnknownNameError
from bench.core.knobs import Knob
from bench.core.names import STANDALONE
from bench.core.registries import STUDENTS
from bench.core.registry import Entry, nearest_names
from bench.students.base import StudentBuilder, StudentContext

PREFIX = "timm"


class TimmStudent(nn.Module):
    """A timm model split into features -> pre-logits embedding -> classifier."""

    def __init__(self, model: nn.Module, image_size: int, in_channels: int) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            was_training = model.training
            probe = model.eval().forward_head(model.forward_features(
                torch.zeros(2, in_channels, image_size, image_size)), pre_logits=True)
            model.train(was_training)
        self.embed_dim = int(probe.shape[-1])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.model.forward_features(images)
        embedding = self.model.forward_head(features, pre_logits=True)
        outputs = {"logits": self.model.get_classifier()(embedding), "embedding": embedding}
        if features.dim() == 4:
            outputs["feature_map"] = features
        return outputs


def _builder(model_name: str) -> StudentBuilder:
    def build(context: StudentContext, hparams: Mapping[str, Any]) -> nn.Module:
        import timm

        try:
            model = timm.create_model(model_name, pretrained=False, num_classes=context.num_classes,
                                      in_chans=context.in_channels, drop_rate=float(hparams["drop_rate"]))
            return TimmStudent(model, context.image_size, context.in_channels)
        except (RuntimeError, ValueError, TypeError, AssertionError) as error:
            raise BenchError(f"student timm:{model_name} cannot run at image size {context.image_size}: "
                             f"{str(error).splitlines()[0]}; pick a larger student_image_size") from None

    return StudentBuilder(build, {"drop_rate": Knob(0.0, float, ge=0, lt=1, help="dropout before the classifier")})


def resolve_timm(name: str) -> Entry[StudentBuilder]:
    """`timm:resnet18` -> an entry building timm's resnet18 (unknown model names suggest near ones)."""
    import timm

    model_name = name.split(":", 1)[1]
    if not timm.is_model(model_name):
        close = nearest_names(model_name, timm.list_models())
        hint = f"did you mean: {', '.join(PREFIX + ':' + c for c in close)}?" if close else "see timm.list_models()"
        raise UnknownNameError(f"unknown student {name!r}: timm has no model {model_name!r}; {hint}")
    return STUDENTS.make_entry(name, _builder(model_name), StudentCard(STANDALONE),
                               f"timm model {model_name} (random init)")


STUDENTS.add_prefix_resolver(PREFIX, resolve_timm)
