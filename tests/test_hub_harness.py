"""keras-hub's own review harness (``keras_hub.src.tests.test_case.TestCase``)
run on the HIRI-ViT classes, as a keras-hub reviewer would."""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")  # CI installs it ([dev])
from keras_hub.src.tests.test_case import TestCase  # noqa: E402  (keras-hub's harness; tests only)

from keras_hiri.tasks import hub  # noqa: E402

SHAPE = (64, 64, 3)
PRESET = "tiny_skimage_patches_64"


def _images(n=2):
    return np.random.default_rng(0).integers(0, 256, (n, *SHAPE)).astype("float32")


class HiriViTBackboneHarnessTest(TestCase):
    def setUp(self):
        self.init_kwargs = {"variant": "tiny", "image_shape": SHAPE}

    def test_vision_backbone(self):
        # The harness's mixed-precision check fails here for keras-hub's own
        # backbones too (test_precision_check_fails_for_keras_hubs_resnet); the
        # policies are tested in tests/test_mixed_precision.py.
        self.run_vision_backbone_test(
            cls=hub.HiriViTBackbone, init_kwargs=self.init_kwargs, input_data=_images(),
            expected_output_shape=(2, 1, 1, 96), run_mixed_precision_check=False,
            expected_pyramid_output_keys=["P2", "P3", "P4", "P5", "P6"],
            expected_pyramid_image_sizes=[(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)],
        )

    def test_precision_check_fails_for_keras_hubs_resnet(self):
        """In this environment (Keras 3.15) the check's ``compute_output_spec``
        on NumPy input hands layers no shape, for keras-hub's ResNet as for
        HIRI-ViT; on PyTorch/CPU the harness skips the check."""
        import keras

        if keras.backend.backend() == "torch":
            return
        resnet = dict(input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64],
                      stackwise_num_blocks=[2, 2], stackwise_num_strides=[1, 2], block_type="basic_block",
                      use_pre_activation=False, image_shape=(None, None, 3))
        for cls, kwargs in ((keras_hub.models.ResNetBackbone, resnet), (hub.HiriViTBackbone, self.init_kwargs)):
            # a layer's compute_output_shape gets None: ResNet's unpacks it, HIRI-ViT's
            # first layer (Keras' Normalization) returns it
            with self.assertRaisesRegex((TypeError, ValueError), "NoneType|Received: None"):
                self.run_precision_test(cls, kwargs, _images())

    def test_model_saving(self):
        self.run_model_saving_test(cls=hub.HiriViTBackbone, init_kwargs=self.init_kwargs, input_data=_images())

    def test_preset(self):
        self.run_preset_test(cls=hub.HiriViTBackbone, preset=PRESET, input_data=_images(),
                             expected_output_shape=(2, 1, 1, 96))


class HiriViTImageClassifierHarnessTest(TestCase):
    def setUp(self):
        converter = hub.HiriViTImageConverter(image_size=SHAPE[:2])
        self.init_kwargs = {
            "backbone": hub.HiriViTBackbone("tiny", image_shape=SHAPE), "num_classes": 3,
            "preprocessor": hub.HiriViTImageClassifierPreprocessor(converter),
        }
        self.train_data = (_images(4), np.array([0, 1, 2, 0]))

    def test_task(self):
        self.run_task_test(cls=hub.HiriViTImageClassifier, init_kwargs=self.init_kwargs,
                           train_data=self.train_data, expected_output_shape=(4, 3))

    def test_model_saving(self):
        self.run_model_saving_test(cls=hub.HiriViTImageClassifier, init_kwargs=self.init_kwargs,
                                   input_data=self.train_data[0])

    def test_preset(self):
        self.run_preset_test(cls=hub.HiriViTImageClassifier, preset=PRESET, input_data=_images(),
                             expected_output_shape=(2, 10))
