import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri import PAPER, profiling
from keras_hiri.cli.profile import main as profiling_main
from tests.helpers import infer
from tests.tiny import images, tiny_model


@pytest.mark.backend_independent
@pytest.mark.parametrize("letter", ["S", "B", "L"])
def test_params_and_gmacs_match_paper(letter):
    """Counted from the built model: params within 2 %, GMACs @448 within 10 %."""
    model = keras_hiri.HiriViT(letter, input_shape=(448, 448, 3))
    result = keras_hiri.profile(model)
    paper = PAPER[letter]
    assert result.params_m == pytest.approx(paper["params_m"], rel=0.02)
    assert result.gmacs == pytest.approx(paper["gmacs"][448], rel=0.10)
    assert result.params == model.count_params() - result.non_trainable_params


@pytest.mark.backend_independent
def test_pinned_224_matches_paper_and_plain_schedule_does_not():
    pinned = keras_hiri.profile(keras_hiri.HiriViTS(input_shape=(224, 224, 3), pin_late_grids=True))
    plain = keras_hiri.profile(keras_hiri.HiriViTS(input_shape=(224, 224, 3)))
    assert pinned.gmacs == pytest.approx(PAPER["S"]["gmacs"][224], rel=0.10)
    assert plain.gmacs < 0.5 * PAPER["S"]["gmacs"][224]


def test_counter_matches_hand_count_on_small_model():
    """Conv, depthwise, dense and attention MACs on a graph whose cost is known."""
    from keras_hiri.layers.blocks import MultiHeadSelfAttention

    inp = keras.Input((8, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)  # 8*6*4*9*3
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)  # 4*3*4*9
    x = keras.layers.Reshape((12, 4))(x)
    x = MultiHeadSelfAttention(4, 2, name="attn")(x)  # 3 dense of 12*4*{4,8,4} + 2*12*12*4
    x = keras.layers.Dense(5, name="dense")(x)  # 12*4*5
    model = keras.Model(inp, x, name="hand")
    result = keras_hiri.profile(model)
    expected = 8 * 6 * 4 * 9 * 3 + 4 * 3 * 4 * 9 + 12 * 4 * (4 + 8 + 4) + 2 * 12 * 12 * 4 + 12 * 4 * 5
    assert result.macs == expected
    assert result.params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _repeating_model():
    """A conv before ``ops.repeat``, which Keras 3.15's PyTorch backend cannot
    run on the "meta" device: its symbolic pass starts again on the CPU."""
    inp = keras.Input((8, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras.layers.Lambda(lambda t: keras.ops.repeat(t, 2, axis=1), name="repeat")(x)
    return keras.Model(inp, keras.layers.Dense(5, name="dense")(x), name="repeating")


@pytest.mark.parametrize("build", [tiny_model, _repeating_model])
def test_symbolic_count_equals_the_count_of_a_real_forward_pass(build):
    """profile() traces symbolically; a pass that Keras starts again (PyTorch,
    an op without a meta kernel) is counted once."""
    model = build()
    result = keras_hiri.profile(model)
    totals = {}
    with profiling._hooks(model, totals):
        infer(model, images(1, model.input.shape[1:]))
    assert result.macs == sum(totals.values()) > 0
    for part, _, macs in result.rows:
        assert macs == totals.get(part, 0), part


def test_profile_table_and_dynamic_input():
    model = keras_hiri.HiriViT(
        keras_hiri.HiriViTConfig(
            widths=(8, 8, 8, 16, 16), depths=(1,) * 5, mlp_ratios=(2,) * 5,
            num_heads=(None, None, None, 1, 1),
        ),
        include_top=False,
    )
    with pytest.raises(ValueError, match="pass input_shape"):
        keras_hiri.profile(model)
    with pytest.raises(ValueError, match="profile needs a built functional keras.Model"):
        keras_hiri.profile("hiri_vit_s")
    small, large = (keras_hiri.profile(model, (s, s, 3)) for s in (64, 128))
    assert small.params == large.params
    assert 3.5 < large.macs / small.macs < 4.5  # cost scales with pixels
    table = large.table()
    assert "stage4" in table and "total" in table


@pytest.mark.backend_independent
def test_profiling_cli(capsys):
    profiling_main(["--variant", "S", "--resolution", "224", "--pin-late-grids"])
    out = capsys.readouterr().out
    assert "hiri_vit_s @ 224x224" in out
    total = [line for line in out.splitlines() if line.startswith("total")][0]
    assert float(total.split()[1]) == pytest.approx(34.8, rel=0.01)


def test_latency_times_every_repeat_and_checks_its_arguments():
    from keras_hiri.profiling import latency
    from tests.tiny import images, tiny_model

    model = tiny_model()
    median, times = latency(model, images(2), warmup=1, repeats=3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert min(times) <= median <= max(times)
    with pytest.raises(ValueError, match="repeats must be an int >= 1. Received: repeats=0"):
        latency(model, images(2), repeats=0)


def test_time_calls_runs_warmup_untimed_then_times_each_repeat():
    from keras_hiri.profiling import time_calls

    calls = []
    median, times = time_calls(lambda: calls.append(len(calls)), warmup=2, repeats=3)
    assert calls == [0, 1, 2, 3, 4] and len(times) == 3
    assert min(times) <= median <= max(times)
    with pytest.raises(ValueError, match="warmup must be an int >= 0. Received: warmup=-1"):
        time_calls(lambda: None, warmup=-1, repeats=1)
