"""DETR object detection (detr-resnet50) on real torch and the real CPU: the published
architecture builds without timm, the loss is transformers' own, every mode runs and is counted
(FLOPs and memory on fake tensors, the Hungarian matcher included). The modes run on a tiny
DETR of the same code (a 2-stage ResNet, one encoder and decoder layer, 64x64 images)."""

from __future__ import annotations

import copy
import itertools
import math

import pytest

from chipfit.backends import get_backend
from chipfit.spec import MODES, DeviceRef
from chipfit.workloads import get_workload
from chipfit.workloads.detection import DetrResNet50, detr_loss, hungarian_match

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CPU = DeviceRef("torch", "cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest


class TinyDetr(DetrResNet50):
    name = "detr-tiny-test"
    side, classes, boxes_per_image = 64, 5, 3
    detr = dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32,
                decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
                num_queries=6)
    backbone = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                    out_features=["stage2"])


@pytest.fixture(scope="module")
def tiny():
    """The tiny DETR, registered under its own name for the duration of this module."""
    import chipfit.workloads as registry

    registry.all_workloads()
    registry._REGISTRY[TinyDetr.name] = TinyDetr()
    yield registry._REGISTRY[TinyDetr.name]
    del registry._REGISTRY[TinyDetr.name]


def _targets(labels, boxes):
    return [{"class_labels": c, "boxes": b} for c, b in zip(labels, boxes, strict=True)]


def test_the_published_detr_resnet50_builds_from_configs_without_timm():
    from transformers.models.resnet.modeling_resnet import ResNetBackbone

    workload = get_workload("detr-resnet50")
    assert workload.axis == "batch" and workload.modes == MODES and workload.family == "detection"
    with torch.device("meta"):  # shapes only: nothing allocated, nothing downloaded
        model = workload.make_model()
    assert isinstance(model.model.backbone.model, ResNetBackbone)
    # Carion et al. 2020, Table 1: DETR (ResNet-50) has 41M parameters.
    assert sum(p.numel() for p in model.parameters()) == 41_524_768
    frozen = {n.split(".")[4] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"embedder", "stages"}  # the stem and stage 0, as DETR trains it
    assert all(".stages.0." in n or ".embedder." in n
               for n, p in model.named_parameters() if not p.requires_grad)


def test_the_loss_is_transformers_detr_loss_and_the_matching_is_optimal(tiny):
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    torch.manual_seed(0)
    model = tiny.make_model().eval()
    images, labels, boxes = tiny.make_inputs(2, "train")
    targets = _targets(labels, boxes)
    out = model(pixel_values=images, labels=targets)
    theirs, terms, _ = ForObjectDetectionLoss(out.logits, targets, "cpu", out.pred_boxes,
                                              model.config)
    assert out.loss.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert out.loss_dict["loss_giou"].item() == pytest.approx(terms["loss_giou"].item(), rel=1e-6)
    ours, _, _ = detr_loss(out.logits, targets, "cpu", out.pred_boxes, model.config)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)

    # The assignment is deterministic and the cheapest one (brute force over 6 queries).
    first = hungarian_match(out.logits, out.pred_boxes, targets, model.config)
    again = hungarian_match(out.logits, out.pred_boxes, targets, model.config)
    assert all(torch.equal(a, b) for x, y in zip(first, again, strict=True)
               for a, b in zip(x, y, strict=True))
    single = [targets[0]]
    (queries, order), = hungarian_match(out.logits[:1], out.pred_boxes[:1], single, model.config)
    cost = _cost_matrix(out.logits[0], out.pred_boxes[0], single[0], model.config)
    best = min(sum(cost[q, t] for t, q in enumerate(p))
               for p in itertools.permutations(range(cost.shape[0]), cost.shape[1]))
    assert sum(cost[q, t] for q, t in zip(queries.tolist(), order.tolist(), strict=True)) == (
        pytest.approx(float(best), rel=1e-6))


def _cost_matrix(logits, boxes, target, config):
    from transformers.image_transforms import center_to_corners_format
    from transformers.loss.loss_for_object_detection import generalized_box_iou

    with torch.no_grad():
        prob = logits.softmax(-1)[:, target["class_labels"]]
        giou = generalized_box_iou(center_to_corners_format(boxes),
                                   center_to_corners_format(target["boxes"]))
        return (config.bbox_cost * torch.cdist(boxes, target["boxes"], p=1)
                - config.class_cost * prob - config.giou_cost * giou)


def test_every_mode_runs_a_step_and_is_counted_on_fake_tensors(tiny):
    with get_backend("torch").session(CPU) as session:
        built = {mode: tiny.build("torch", "2", "float32", mode, session) for mode in MODES}
    logits, boxes = built["inference"].fn(*built["inference"].host_args)
    assert logits.shape == (2, 6, 6) and boxes.shape == (2, 6, 4)  # 5 classes + "no object"
    assert ((boxes >= 0) & (boxes <= 1)).all()
    assert dict(built["inference"].details)["input"] == "3x64x64 image"
    assert math.isfinite(float(built["train"].fn(*built["train"].host_args)))
    head = sum(p.numel() for n, p in tiny.make_model().named_parameters()
               if n.startswith(tiny.head))
    assert int(dict(built["finetune"].details)["trainable_params"]) == head

    for mode in ("inference", "train"):  # in train, the matcher and DETR's checks run too
        found = tiny.profile("2", "float32", mode)
        assert found.method == "fake" and found.flops > 0, (mode, found.method)
        assert tiny.memory_estimate("2", "float32", mode) > found.param_bytes
    assert tiny.cost("2", "float32", "train").flops > tiny.cost("2", "float32").flops


def test_finetune_trains_only_the_heads(tiny):
    from chipfit.workloads.models import _template

    model = copy.deepcopy(_template(tiny.name))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fn = tiny.model_call(model, "finetune", "float32", torch.device("cpu"))
    fn(*tiny.make_inputs(2, "finetune"))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(tiny.head) for n in changed)
