"""Object detection on a HIRI-ViT backbone (paper Sec. 5.2): keras-hub's
RetinaNet over the backbone's feature pyramid, and COCO's own evaluator.

Needs the optional extra ``pip install "keras-hiri[detect]"`` (keras-hub and
pycocotools), imported on first use of a function here::

    from keras_hiri.tasks import detection
    detector = detection.retinanet(detection.hiri_encoder("tiny", 128), num_classes=4)
    detector.fit(detection.train_dataset(images, boxes, labels, batch_size=8), epochs=6)
    scores = detection.evaluate(detector, images, boxes, labels, class_names)
    scores["mAP"], scores["AP50"], scores["AP75"]

Boxes are ``(x_min, y_min, x_max, y_max)`` in pixels ("xyxy") everywhere in
this module; a padded row has label ``-1``.
"""

import contextlib
import io

import keras
import numpy as np

from keras_hiri import builder, checks, variants

BOX_FORMAT = "xyxy"
# pycocotools' COCOeval.stats: the figures this module reports, by index.
COCO_STATS = {"mAP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5}


def _keras_hub():
    try:
        import keras_hub
    except ModuleNotFoundError as error:
        raise ImportError(
            'keras_hiri.tasks.detection needs keras-hub. Install the extra: pip install "keras-hiri[detect]"'
        ) from error
    return keras_hub


def hiri_encoder(variant, image_size, weights=None, drop_path_rate=0.0):
    """A HIRI-ViT :class:`~keras_hiri.tasks.hub.HiriViTBackbone` for square
    ``image_size`` inputs (``[0, 255]`` RGB), from ``weights`` (a registry name
    or a keras-hub preset directory of a ``HiriViTBackbone``, or ``None`` for
    random initialisation)."""
    _keras_hub()
    from keras_hiri.tasks import hub

    shape = (image_size, image_size, 3)
    if weights is None:
        return hub.HiriViTBackbone(variant, image_shape=shape, drop_path_rate=drop_path_rate)
    encoder = hub.HiriViTBackbone.from_preset(weights, image_shape=shape,
                                              drop_path_rate=drop_path_rate)
    if encoder.hiri_config != variants.get_config(variant):
        raise ValueError(f"weights {weights!r} are for variant {encoder.variant!r}, "
                         f"not {variant!r}")
    return encoder


def resnet_encoder(image_size, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)):
    """A randomly initialised keras-hub ``ResNetBackbone`` (basic blocks, as
    ResNet-18 with ``widths`` channels per stage) behind the same ``[0, 255]``
    input scaling as HIRI-ViT's, as an encoder with ``pyramid_outputs`` P2-P5:
    the baseline backbone of ``examples/detect.py``."""
    keras_hub = _keras_hub()
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[widths[0]], input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(widths), stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        image_shape=(image_size, image_size, 3),
    )
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = builder.imagenet_normalization()(inputs)  # HIRI-ViT's own preprocessing
    levels = keras.Model(resnet.inputs, resnet.pyramid_outputs, name="resnet")(x)
    encoder = keras.Model(inputs, levels, name="resnet_encoder")
    encoder.pyramid_outputs = levels
    return encoder


def retinanet(encoder, num_classes, head_convs=2, confidence_threshold=0.05,
              max_detections=100):
    """keras-hub's ``RetinaNetObjectDetector`` on ``encoder`` (anything with
    ``inputs`` and ``pyramid_outputs`` holding P3-P5 at strides 8-32): FPN levels
    P3-P7 as in the paper's RetinaNet, ``head_convs`` convolutions in each head
    (RetinaNet's own 4 cost most of a small model's time), boxes in "xyxy".

    The prediction decoder keeps detections down to ``confidence_threshold``
    (COCO scoring wants low-confidence detections too) after per-class NMS.
    """
    checks.int_at_least("num_classes", num_classes)
    checks.int_at_least("head_convs", head_convs, 0)
    checks.int_at_least("max_detections", max_detections)
    checks.number_in("confidence_threshold", confidence_threshold, 0, 1)
    keras_hub = _keras_hub()
    missing = [level for level in ("P3", "P4", "P5") if level not in encoder.pyramid_outputs]
    if missing:
        raise ValueError(f"encoder has no pyramid level(s) {missing}: RetinaNet needs P3-P5. "
                         f"Received levels: {sorted(encoder.pyramid_outputs)}")
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=7, use_p5=False,
        image_shape=tuple(encoder.inputs[0].shape[1:]),
    )
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format=BOX_FORMAT, from_logits=True,
        confidence_threshold=confidence_threshold, max_detections=max_detections,
    )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=num_classes, bounding_box_format=BOX_FORMAT,
        pre_logits_num_conv_layers=head_convs, prediction_decoder=decoder,
    )


def train_dataset(images, boxes, labels, batch_size, seed=0):
    """A ``tf.data`` pipeline (any backend's ``fit`` takes it) of
    ``(images float32, {"boxes", "labels"})`` batches, reshuffled every epoch
    from ``seed``, last partial batch dropped. (keras-hub's task models turn
    arrays into a grain dataset and ignore ``shuffle=True``.)"""
    from keras_hiri import extras

    tf = extras.require_tensorflow("keras_hiri.tasks.detection.train_dataset")
    ds = tf.data.Dataset.from_tensor_slices(
        (images.astype("float32"), {"boxes": boxes, "labels": labels}))
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def predict(detector, images, batch_size=16):
    """Detections of ``images``, one ``(boxes (k, 4), scores (k,), labels (k,))``
    per image, NMS applied."""
    batch = detector.predict(np.asarray(images, "float32"), batch_size=batch_size, verbose=0)
    batch = {key: keras.ops.convert_to_numpy(value) for key, value in batch.items()}
    out = []
    for i in range(len(batch["boxes"])):
        k = int(batch["num_detections"][i])
        out.append((batch["boxes"][i, :k], batch["confidence"][i, :k], batch["labels"][i, :k]))
    return out


def _xywh(box):
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _coco_truth(COCO, boxes, labels, class_names, image_size):
    """The ground truth as a pycocotools ``COCO`` object (index not created)."""
    annotations = []
    for image_id, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        for box, label in zip(image_boxes, image_labels):
            if label < 0:
                continue
            bbox = _xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(label) + 1, "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": 0})
    truth = COCO()
    truth.dataset = {
        "images": [{"id": i, "width": image_size, "height": image_size} for i in range(len(boxes))],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(class_names)],
    }
    return truth


def coco_scores(boxes, labels, detections, class_names, image_size):
    """COCO box AP of ``detections`` (as :func:`predict` returns them) against
    the ground truth ``boxes`` / ``labels`` (padded arrays, label ``-1`` unused),
    computed by pycocotools' ``COCOeval``, the evaluator of the paper's COCO
    figures. Returns ``{"mAP", "AP50", "AP75", "AP_small", "AP_medium",
    "AP_large"}`` (``-1`` where a size range holds no object, as COCOeval) and
    ``"per_class_AP"`` (class name → AP at IoU .50:.95) and ``"summary"``,
    COCOeval's printed table."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ModuleNotFoundError as error:
        raise ImportError(
            'COCO scoring needs pycocotools. Install the extra: pip install "keras-hiri[detect]"'
        ) from error

    truth = _coco_truth(COCO, boxes, labels, class_names, image_size)
    results = [
        {"image_id": image_id, "category_id": int(label) + 1, "bbox": _xywh(box),
         "score": float(score)}
        for image_id, (image_boxes, scores, image_labels) in enumerate(detections)
        for box, score, label in zip(image_boxes, scores, image_labels)
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # pycocotools prints as it goes
        truth.createIndex()
        if not results:  # loadRes refuses an empty list; no detection scores 0
            return dict({key: 0.0 for key in COCO_STATS}, summary="no detections",
                        per_class_AP={name: 0.0 for name in class_names})
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    summary = "\n".join(line for line in printed.getvalue().splitlines()
                        if line.lstrip().startswith("Average"))
    scores = {key: float(evaluation.stats[i]) for key, i in COCO_STATS.items()}
    # Per class: the mean precision over IoU thresholds and recall points
    # (area "all", 100 detections), as COCOeval's mAP; -1 for a class without objects.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    scores["per_class_AP"] = {
        name: float(precision[:, :, k][precision[:, :, k] > -1].mean())
        if (precision[:, :, k] > -1).any() else -1.0
        for k, name in enumerate(class_names)
    }
    scores["summary"] = summary
    return scores


def evaluate(detector, images, boxes, labels, class_names, batch_size=16):
    """:func:`coco_scores` of ``detector`` on ``images``."""
    return coco_scores(boxes, labels, predict(detector, images, batch_size), class_names,
                       image_size=images.shape[1])
