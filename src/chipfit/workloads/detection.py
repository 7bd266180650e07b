"""Object detection: DETR with a ResNet-50 backbone, from transformers configs, random weights.

``detr-resnet50`` is the architecture of ``facebook/detr-resnet-50`` (Carion et al. 2020, "End-to-End
Object Detection with Transformers", Table 1: 41M parameters): transformers' own ResNet-50
backbone (``ResNetConfig`` defaults, ``stage4`` features, frozen batch norm), a 6+6-layer
encoder-decoder transformer 256 wide with 8 heads, 100 object queries, and heads for 91 COCO
categories plus "no object" and for one box per query. Built from configs, never downloaded.

Why DETR: on the pinned stack (transformers 5.24, no timm, no torchvision) DETR, YOLOS and
RT-DETR all build (checked): ``DetrConfig(use_timm_backbone=False, backbone_config=ResNetConfig(...))``
takes transformers' ``ResNetBackbone`` instead of timm's. DETR is the reference set-prediction
detector whose Hungarian-matching loss the other two reuse, and its backbone is the ResNet-50 of
the ``resnet50`` workload, so classification and detection on one backbone compare directly.
RT-DETR was left out because its multi-scale deformable attention runs as ``grid_sample``
gathers on a CPU and as a custom kernel from the Hub on GPUs, neither of which chipfit's cost
tracer or GPU kernel models describe; YOLOS is a plain ViT, which ``vit-base`` already covers.

Image size: 512x512, batch as the size axis. The paper evaluates at a shorter side of 800
pixels (86 GFLOPs per COCO image); 512x512 (16x16 = 256 encoder tokens) keeps the default
ladder to minutes on a laptop CPU and is stated with every measurement (``input``).

Modes: ``inference`` returns the class logits and boxes of every query; ``train`` runs DETR's
loss against random targets (8 boxes per image; COCO averages 7.7 instances per image, Lin
et al. 2014, "Microsoft COCO: Common Objects in Context", sec. 5) and takes an
SGD-with-momentum step (DETR's own recipe freezes the backbone's stem and first stage, so
those stay frozen: :func:`_detr_backbone_recipe`); ``finetune`` trains only the class and box heads.

The loss is DETR's (transformers' ``ForObjectDetectionLoss``: Hungarian matching with class,
L1 and generalised-IoU costs, then cross-entropy with a 0.1 weight on "no object", 5x L1 and
2x GIoU over the matched boxes), written out here (:func:`detr_loss`, checked equal to
transformers' in the tests) for one reason: transformers' version checks the boxes' corner
order with a data-dependent ``if`` and assigns with SciPy on host numpy arrays, neither of
which can run on the fake tensors chipfit counts FLOPs and memory with. Here the assignment
is SciPy's ``linear_sum_assignment`` on real tensors (deterministic: the same costs give the
same matching) and, on fake tensors only, a stand-in assignment of the same sizes (which
queries are matched does not change the work the loss does). The check is left out: predicted
boxes come out of a sigmoid as (centre, size), so their corners are always ordered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chipfit.workloads.base import Workload
from chipfit.workloads.models import HFModel, _generator, _transformers

__all__ = ["DetrResNet50", "detr_loss", "hungarian_match", "workloads"]


class DetrResNet50(HFModel):
    """DETR-ResNet-50 (facebook/detr-resnet-50's architecture) on 512x512 images."""

    name = "detr-resnet50"
    family = "detection"
    description = ("DETR object detector (ResNet-50 backbone, 6+6-layer transformer, 100 "
                   "queries, 91 classes), 512x512 images; size = batch")
    head = ("class_labels_classifier", "bbox_predictor")
    side = 512
    classes = 91  # COCO category ids, as facebook/detr-resnet-50's config
    boxes_per_image = 8
    #: ``DetrConfig`` fields (the published model's; tests override them for a tiny model).
    detr: dict[str, Any] = {}
    #: ``ResNetConfig`` fields of the backbone (defaults: ResNet-50).
    backbone: dict[str, Any] = {}

    @property
    def input_note(self) -> str:  # type: ignore[override]
        return f"3x{self.side}x{self.side} image"

    def make_model(self) -> Any:
        tf = _transformers()
        backbone = tf.ResNetConfig(**{"out_features": ["stage4"], **self.backbone})
        config = tf.DetrConfig(use_timm_backbone=False, backbone_config=backbone,
                               num_labels=self.classes, **self.detr)
        model = tf.DetrForObjectDetection(config)
        model.loss_function = detr_loss
        _detr_backbone_recipe(model)
        return model

    def make_inputs(self, batch: int, mode: str) -> tuple[Any, ...]:
        import torch

        gen = _generator(mode)
        images = torch.randn(batch, 3, self.side, self.side, generator=gen)
        if mode == "inference":
            return (images,)
        shape = (batch, self.boxes_per_image)
        labels = torch.randint(0, self.classes, shape, generator=gen)
        centre = 0.25 + 0.5 * torch.rand(*shape, 2, generator=gen)
        size = 0.05 + 0.4 * torch.rand(*shape, 2, generator=gen)  # inside the image
        return images, labels, torch.cat([centre, size], dim=-1)

    def forward(self, mode: str) -> Callable[..., Any]:
        if mode == "inference":
            return _detect
        return _detect_with_loss


def _detr_backbone_recipe(model: Any) -> None:
    """Train the backbone as DETR does: all but the stem and the first stage (facebookresearch/
    detr, models/backbone.py, trains ResNet ``layer2``-``layer4``).

    transformers 5.24 means to do the same, but its name test looks for ``stage.1`` in names
    spelled ``stages.1`` and so freezes the whole native ResNet backbone.
    """
    for name, param in model.model.backbone.model.named_parameters():
        param.requires_grad_(not name.startswith(("embedder.", "encoder.stages.0.")))


def _detect(model: Any, images: Any) -> Any:
    out = model(pixel_values=images)
    return out.logits, out.pred_boxes


def _detect_with_loss(model: Any, images: Any, labels: Any, boxes: Any) -> Any:
    targets = [{"class_labels": c, "boxes": b} for c, b in zip(labels, boxes, strict=True)]
    with _checks_pass(images):
        return model(pixel_values=images, labels=targets)


def _checks_pass(images: Any) -> Any:
    """On fake tensors, a context in which DETR's data-dependent checks pass.

    In training, each encoder layer of transformers' DETR asks ``torch.isfinite(h).all()`` (and
    clamps if not): a value fake tensors do not have. Counting assumes the answer of a healthy
    model (finite), so the counted call is the timed one without the clamp it never takes.
    """
    import contextlib

    if not _is_fake(images):
        return contextlib.nullcontext()
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    asks = {torch.ops.aten.is_nonzero.default, torch.ops.aten._local_scalar_dense.default}

    class ChecksPass(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if func in asks and args[0].dtype == torch.bool:
                return True
            return func(*args, **(kwargs or {}))

    return ChecksPass()


# ---- DETR's loss -------------------------------------------------------------------------
def _is_fake(tensor: Any) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(tensor, FakeTensor)


def _corners(boxes: Any) -> Any:
    """(centre x, centre y, width, height) -> (x0, y0, x1, y1)."""
    import torch

    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _giou(a: Any, b: Any) -> Any:
    """Pairwise generalised IoU (Rezatofighi et al. 2019) of corner boxes: (N, M)."""
    import torch

    def area(x: Any) -> Any:
        return (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])

    inter_wh = (torch.min(a[:, None, 2:], b[:, 2:]) - torch.max(a[:, None, :2], b[:, :2])).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area(a)[:, None] + area(b) - inter
    hull_wh = (torch.max(a[:, None, 2:], b[:, 2:]) - torch.min(a[:, None, :2], b[:, :2])).clamp(min=0)
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return inter / union - (hull - union) / hull


def hungarian_match(logits: Any, pred_boxes: Any, targets: list[dict[str, Any]],
                    config: Any) -> list[tuple[Any, Any]]:
    """Per image, (query indices, target indices) of the cheapest one-to-one matching.

    The cost of matching a query to a target is ``bbox_cost * L1 - class_cost * p(class) -
    giou_cost * GIoU`` (DETR's matcher); SciPy solves the assignment on the host.
    """
    import torch

    with torch.no_grad():
        batch, queries = logits.shape[:2]
        prob = logits.flatten(0, 1).softmax(-1)
        boxes = pred_boxes.flatten(0, 1)
        ids = torch.cat([t["class_labels"] for t in targets])
        wanted = torch.cat([t["boxes"] for t in targets])
        cost = (config.bbox_cost * torch.cdist(boxes, wanted, p=1) - config.class_cost * prob[:, ids]
                - config.giou_cost * _giou(_corners(boxes), _corners(wanted)))
        top = torch.finfo(cost.dtype).max
        cost = torch.nan_to_num(cost, nan=top, posinf=top, neginf=top).view(batch, queries, -1)
        cost = cost.float().cpu()  # SciPy takes float32/64 numpy arrays
        sizes = [len(t["boxes"]) for t in targets]
        if _is_fake(cost):  # shapes only: a stand-in assignment of the same sizes
            return [(torch.arange(n), torch.arange(n)) for n in sizes]
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError as exc:
            from chipfit.errors import UnsupportedError

            raise UnsupportedError(f"DETR's matcher needs SciPy ({exc}); install it with: "
                                   "pip install 'chipfit[models]'") from None

        found = [linear_sum_assignment(c[i].numpy()) for i, c in enumerate(cost.split(sizes, -1))]
    return [(torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64))
            for i, j in found]


def _terms(logits: Any, pred_boxes: Any, targets: list[dict[str, Any]], config: Any,
           num_boxes: float) -> dict[str, Any]:
    """DETR's loss terms for one decoder layer's predictions."""
    import torch
    import torch.nn.functional as F

    indices = hungarian_match(logits, pred_boxes, targets, config)
    image = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)]).to(logits.device)
    query = torch.cat([q for q, _ in indices]).to(logits.device)
    matched = [(t["class_labels"][j.to(t["class_labels"].device)], t["boxes"][j.to(t["boxes"].device)])
               for t, (_, j) in zip(targets, indices, strict=True)]
    classes = torch.full(logits.shape[:2], config.num_labels, dtype=torch.int64,
                         device=logits.device)
    classes[image, query] = torch.cat([c for c, _ in matched])
    weight = torch.ones(config.num_labels + 1, device=logits.device)
    weight[-1] = config.eos_coefficient  # "no object" is down-weighted
    source = pred_boxes[image, query]
    wanted = torch.cat([b for _, b in matched])
    giou = torch.diag(_giou(_corners(source), _corners(wanted)))
    return {"loss_ce": F.cross_entropy(logits.transpose(1, 2), classes, weight),
            "loss_bbox": F.l1_loss(source, wanted, reduction="none").sum() / num_boxes,
            "loss_giou": (1 - giou).sum() / num_boxes}


def detr_loss(logits: Any, labels: list[dict[str, Any]], device: Any, pred_boxes: Any,
              config: Any, outputs_class: Any = None, outputs_coord: Any = None,
              **_: Any) -> tuple[Any, dict[str, Any], Any]:
    """DETR's training loss, as transformers' ``ForObjectDetectionLoss`` computes it on one
    process: ``(loss, terms, auxiliary outputs)``; set as the model's ``loss_function``."""
    num_boxes = max(float(sum(len(t["class_labels"]) for t in labels)), 1.0)
    terms = _terms(logits, pred_boxes, labels, config, num_boxes)
    weights = {"loss_ce": 1.0, "loss_bbox": config.bbox_loss_coefficient,
               "loss_giou": config.giou_loss_coefficient}
    aux = None
    if config.auxiliary_loss:  # every decoder layer but the last, matched on its own
        aux = [{"logits": a, "pred_boxes": b}
               for a, b in zip(outputs_class[:-1], outputs_coord[:-1], strict=True)]
        for i, layer in enumerate(aux):
            extra = _terms(layer["logits"], layer["pred_boxes"], labels, config, num_boxes)
            terms |= {f"{k}_{i}": v for k, v in extra.items()}
            weights |= {f"{k}_{i}": weights[k] for k in extra}
    loss = sum(terms[k] * weights[k] for k in terms)
    return loss, terms, aux


def workloads() -> list[Workload]:
    return [DetrResNet50()]
