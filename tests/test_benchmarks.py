"""The performance scripts' bookkeeping: ratios, tables, the cost plot.

Timings themselves are never asserted (they live in the benchmarks); these
tests check that the scripts compute P1/P2/P4 from the right rows, print the
table, and draw the figure, on hand-made results; XLA's memory accounting is
also checked on one tiny model compiled in a JAX subprocess.
"""

import argparse
import json

import numpy as np
import pytest

from tests.helpers import load_script

# Nothing here depends on the Keras backend (see tests/conftest.py).
pytestmark = pytest.mark.backend_independent


def _row(model, resolution, seconds, **flags):
    return {
        "model": model, "resolution": resolution, "median_s": seconds, "images_per_s": 8 / seconds,
        "peak_mib": 100.0, "steady_peak_mib": 60.0, "gmacs": 1.0, "compile": "auto", "repeats": 3,
        **flags,
    }


RESULTS = [
    {"model": "GEMM", "resolution": 2048, "gemm": True, "gmac_per_s": 40.0, "median_s": 0.2,
     "compile": "auto", "repeats": 5},
    _row("S", 224, 0.1),
    _row("S", 224, 0.3, pinned=True),
    _row("S", 448, 0.36, peak_mib=150.0, steady_peak_mib=45.0),
    _row("S", 448, 0.35, folded=True),
    _row("ConvNeXtTiny", 224, 0.72),
    {"model": "S", "resolution": 448, "pair": True, "P4": 1.10, "compile": "auto", "repeats": 3},
]


def test_ratios_come_from_the_right_rows():
    throughput = load_script("benchmarks", "throughput")
    ratios = throughput.ratios(RESULTS)
    assert ratios["P1"] == pytest.approx(0.72 / 0.36)
    assert ratios["P2"] == pytest.approx(0.36 / 0.3)
    assert ratios["P2_plain"] == pytest.approx(3.6)
    assert ratios["P4"] == pytest.approx(1.10)  # the paired measurement, not the two rows
    assert ratios["M"] == pytest.approx(1.5) and ratios["M_steady"] == pytest.approx(0.75)
    assert ratios["G"] == pytest.approx(1.0 * 8 / 0.36 / 40.0)  # S@448's GMAC/s over the GEMM row's


def test_table_marks_targets_met_and_missed(monkeypatch):
    throughput = load_script("benchmarks", "throughput")
    for name in throughput.SPEED_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    table = throughput.markdown({"jax": RESULTS, "torch": RESULTS[:4]}, batch=8)
    assert "XLA_FLAGS" not in table and "MALLOC" not in table
    # A run under non-default XLA flags or allocator thresholds says so.
    monkeypatch.setenv("XLA_FLAGS", "--xla_example=1")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4294967296")
    assert (table.splitlines()[-1] + "; XLA_FLAGS=--xla_example=1; MALLOC_MMAP_THRESHOLD_=4294967296"
            == throughput.markdown({"jax": RESULTS, "torch": RESULTS[:4]}, batch=8).splitlines()[-1])
    assert "retain_freed_memory" not in table
    retained = [{**r, "retain_freed_memory": True} for r in RESULTS]  # --retain-freed-memory
    assert throughput.markdown({"jax": retained}, batch=8).endswith(
        "; process_settings.retain_freed_memory() in every model's process")
    assert "| HIRI-ViT-S folded | 448 |" in table
    assert "2.00 (met)" in table  # P1 on jax
    assert "3.60 (missed)" in table  # P2 plain
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| P")}
    assert lines["P1"].rstrip(" |").endswith("-")  # torch has no ConvNeXt row
    # 1 GMAC x 11.11 img/s against the 40 GMAC/s GEMM peak: 28 %.
    assert "| ConvNeXtTiny | 224 | 1.00 | 11.11 | 720 | 11.1 (28 %) | 100 (60) | failed |" in table
    assert "1.50 (missed)" in table and "0.75 (met)" in table  # memory: M and M_steady on jax
    assert "40.0 (100 %)" in table


def test_setting_table_pairs_each_round():
    throughput = load_script("benchmarks", "throughput")
    row = lambda retain, seconds, mib: {  # noqa: E731
        "model": "S", "resolution": 448, "retain_freed_memory": retain, "median_s": seconds,
        "steady_peak_mib": mib, "minor_faults_per_batch": 0 if retain else 2 * mib, "repeats": 5}
    rounds = [row(False, 1.0, 500), row(True, 0.5, 600), row(False, 0.6, 520), row(True, 0.5, 610),
              row(False, 0.9, 510), row(True, 0.6, 590)]
    table = throughput.setting_table("retain_freed_memory")(
        {"torch": rounds, "jax": [row(False, 1.0, 1), {"error": "x", **row(True, 1, 1)}]}, batch=8)
    # Per-round ratios 2.0, 1.2, 1.5: their median, not the ratio of medians (0.9 / 0.5).
    assert "| torch | 1.000, 0.600, 0.900 | 0.500, 0.500, 0.600 | 1.50x | 510 / 600 | 1020 / 0 |" in table
    assert "| jax | 1.000 | failed | - | - | - |" in table
    assert "retain_freed_memory() s/batch" in table
    assert "in every model's process" not in table  # the alternated setting is not a run-wide one
    both = [{**r, "disable_ynnpack_fusions": True} for r in rounds]  # a run-wide setting is named
    assert "; process_settings.disable_ynnpack_fusions() in every model's process" in throughput.setting_table(
        "retain_freed_memory")({"torch": both}, batch=8)


def test_backend_rounds_table_pairs_each_round():
    throughput = load_script("benchmarks", "throughput")
    row = lambda seconds: {"model": "S", "resolution": 448, "median_s": seconds, "repeats": 5}  # noqa: E731
    table = throughput.backend_rounds_table({
        "tensorflow": [row(0.8), row(0.6), row(0.7)],
        "torch": [row(1.0), row(0.6), row(0.7)],       # per-round ratios 0.8, 1.0, 1.0
        "jax": [row(1.6), {"error": "x", **row(1)}, row(1.0)],  # 0.5 and 0.7
    }, batch=8)
    assert "| tensorflow | 0.800, 0.600, 0.700 | 11.43 | - | - |" in table
    assert "| torch | 1.000, 0.600, 0.700 | 11.43 | 1.000 | >= 0.8 (met) |" in table
    assert "| jax | 1.600, failed, 1.000 | 6.15 | 0.600 | >= 0.8 (missed) |" in table


def test_rounds_alternate_the_backends(monkeypatch):
    throughput = load_script("benchmarks", "throughput")
    order = []
    run = lambda backend, args, progress: order.append(backend) or [backend]  # noqa: E731
    args = type("Args", (), {"backends": ["tensorflow", "torch"], "batch": 8, "json": None})()
    monkeypatch.setattr("builtins.print", lambda *a, **k: None)
    throughput.run_and_report(args, 1, run, lambda results, batch: str(results), rounds=3)
    assert order == ["tensorflow", "torch"] * 3


def test_model_rounds_table_takes_each_ratio_within_a_round():
    throughput = load_script("benchmarks", "throughput")
    s448 = lambda seconds, mib=300.0: _row("S", 448, seconds, peak_mib=mib, steady_peak_mib=mib)  # noqa: E731
    cnt = lambda seconds, mib=400.0: _row("ConvNeXtTiny", 224, seconds, peak_mib=mib, steady_peak_mib=mib)  # noqa: E731
    pinned = lambda seconds: _row("S", 224, seconds, pinned=True)  # noqa: E731
    gemm = lambda rate: {"model": "GEMM", "resolution": 2048, "gemm": True, "gmac_per_s": rate}  # noqa: E731
    rows = [gemm(16.0), s448(1.0), cnt(0.9), pinned(0.8),  # P1 0.90, P2 1.25, G 0.50, M 0.75
            pinned(1.0), cnt(2.4), s448(2.0), gemm(10.0),   # (reversed order) P1 1.20, P2 2.00, G 0.40
            gemm(8.0), s448(1.0, 800.0), cnt(1.1), pinned(1.0),  # P1 1.10, P2 1.00, G 1.00, M 2.00
            {"error": "x", **gemm(1)}, {"error": "x", **s448(1)}, cnt(1.0), pinned(1.0)]  # failed: no ratio
    table = throughput.model_rounds_table({"jax": rows}, batch=8)
    assert ("| jax | 16.0, 10.0, 8.0, failed | 1.000, 2.000, 1.000, failed | 0.900, 2.400, 1.100, 1.000 "
            "| 0.800, 1.000, 1.000, 1.000 | 1.10 (0.90-1.20) met | 1.25 (1.00-2.00) met | 0.50 (0.40-1.00) met "
            "| 0.75 (0.75-2.00) met | 0.75 (0.75-2.00) met |") in table
    assert "| dense GEMM GMAC/s, per round | HIRI-ViT-S@448 s/batch, per round | ConvNeXtTiny@224 s/batch" in table
    assert "P1 >= 1.0, median (range)" in table and "order reversed every other round" in table


def test_model_rounds_reverse_the_order_every_other_round(monkeypatch):
    throughput = load_script("benchmarks", "throughput")
    ran = []
    monkeypatch.setattr(throughput, "run_worker", lambda script, spec, backend, title: ran.append(
        (backend, title)) or {**spec, "backend": backend})
    args = argparse.Namespace(batch=8, warmup=1, repeats=1, compile=None, generic=[],
                              **{name: False for name in throughput.PROCESS_SETTINGS})
    progress = type("Progress", (), {"add": lambda self, n: None})()
    done = {}
    first = throughput.run_ratio_rows(done, "torch", args, progress)
    throughput.run_ratio_rows(done, "jax", args, progress)
    throughput.run_ratio_rows(done, "torch", args, progress)
    order = ["dense GEMM", "HIRI-ViT-S@448", "ConvNeXtTiny@224", "HIRI-ViT-S pinned@224"]
    assert ran == ([("torch", t) for t in order] + [("jax", t) for t in order]
                   + [("torch", t) for t in order[::-1]])
    assert [r["compile"] for r in first] == ["auto"] * 4 and first[0]["gemm"] and first[3]["pinned"]


def test_kernel_pair_table_takes_the_median_of_per_process_ratios():
    throughput = load_script("benchmarks", "throughput")
    pair = lambda generic, backend: {  # noqa: E731
        "model": "S", "resolution": 448, "kernel_pair": "conv", "implementations": ["generic", "backend"],
        "median_s": {"generic": generic, "backend": backend}, "max_abs_diff": 2e-9, "repeats": 7}
    table = throughput.kernel_pair_table({
        "torch": [pair(0.9, 0.8), pair(1.0, 1.0), pair(1.2, 1.0)],
        "jax": [pair(0.8, 0.9), {"error": "x", **pair(1, 1)}],
    }, batch=8)
    assert "| torch | generic: 0.900, 1.000, 1.200 | backend: 0.800, 1.000, 1.000 | 1.125x | 2.0e-09 |" in table
    assert "| jax | generic: 0.800, failed | backend: 0.900, failed | 0.889x | 2.0e-09 |" in table
    assert "| backend | conv: generic op, s/batch per process | backend implementation, s/batch" in table
    assert "--compile" not in table  # the backends' defaults
    eager = throughput.kernel_pair_table({"jax": [{**pair(3.0, 0.7), "compile": "none"}]}, batch=8)
    assert "; --compile none (predict_on_batch with jit_compile=False)" in eager


def test_kernel_pair_worker_builds_the_generic_op_second_on_the_same_weights(monkeypatch):
    throughput = load_script("benchmarks", "throughput")
    from keras_hiri import ops as hiri_ops
    from tests.tiny import tiny_model

    built = []

    def build(spec):
        built.append(hiri_ops.use_torch_conv())
        return tiny_model(input_shape=(64, 64, 3))

    monkeypatch.setattr(throughput, "build", build)
    result = throughput.measure_kernel_pair({"model": "S", "resolution": 64, "batch": 2, "warmup": 1, "repeats": 2,
                                             "compile": "auto", "kernel_pair": "conv"})
    torch_conv = hiri_ops.use_torch_conv()  # the implementation is back after the worker
    assert built == [torch_conv, False] and result["implementations"] == ["generic", "backend"]
    assert set(result["median_s"]) == {"generic", "backend"} and result["max_abs_diff"] < 1e-4


def test_generic_ops_patch_the_choice_only_inside():
    implementations = load_script("benchmarks", "implementations")
    from keras_hiri import ops as hiri_ops

    before = (hiri_ops.use_unrolled_depthwise(), hiri_ops.draws_on_host(3))
    with implementations.generic("depthwise", "init"):
        assert not hiri_ops.use_unrolled_depthwise() and not hiri_ops.draws_on_host(3)
    assert (hiri_ops.use_unrolled_depthwise(), hiri_ops.draws_on_host(3)) == before
    with pytest.raises(ValueError, match="unknown implementation"):
        implementations.check_names(["fence"])


def test_torch_against_tensorflow_ratio():
    throughput = load_script("benchmarks", "throughput")
    slow = [dict(r, images_per_s=r["images_per_s"] / 2) if "images_per_s" in r else r for r in RESULTS]
    table = throughput.markdown({"tensorflow": RESULTS, "torch": slow}, batch=8)
    assert "| T_torch | thr(S@448, torch) / thr(S@448, tensorflow) | >= 0.8 | 0.50 (missed) |" in table


def test_job_list_has_every_row_the_ratios_need():
    throughput = load_script("benchmarks", "throughput")
    parser_args = type("Args", (), {"quick": True})()
    rows = throughput.jobs(parser_args)
    assert rows[0]["gemm"]  # the machine's limit, measured first in the same run
    assert {"model": "S", "resolution": 448, "pair": True} in rows
    assert {"model": "ConvNeXtTiny", "resolution": 224} in rows
    full = throughput.jobs(
        type("Args", (), {"quick": False, "variants": ["S", "B", "L"], "resolutions": [224, 384, 448, 768]})()
    )
    assert len([r for r in full if r["model"] in throughput.PEERS]) == 4
    assert {"model": "L", "resolution": 768} in full


def test_cost_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    plot_cost = load_script("examples", "plot_cost")
    curves = {
        ("HIRI-ViT-S", False): [(224, 1.3, 10.0), (448, 5.0, 40.0)],
        ("HIRI-ViT-S", True): [(224, 4.5, 30.0), (448, 5.0, 40.0)],
        ("ConvNeXtTiny", False): [(224, 4.5, 90.0), (448, 17.8, 360.0)],
    }
    out = tmp_path / "figure.png"
    plot_cost.plot(curves, str(out), batch=4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_train_step_worker_builds_under_its_generic_ops(monkeypatch):
    """A worker spec's ``"generic"`` ops apply while the models are built."""
    train_step = load_script("benchmarks", "train_step")
    from keras_hiri import ops as hiri_ops

    seen = []

    def trainable(model, step, size):
        seen.append(hiri_ops.draws_on_host(3))
        raise RuntimeError("built")

    monkeypatch.setattr(train_step, "_trainable", trainable)
    with pytest.raises(RuntimeError, match="built"):
        train_step.measure({"model": "S", "resolution": 64, "step": "plain", "batch": 2, "warmup": 1, "repeats": 1,
                            "generic": ["init"]})
    assert seen == [False]


def test_train_step_table_and_ratios(monkeypatch):
    train_step = load_script("benchmarks", "train_step")
    rows = lambda plain, distill, peer: [  # noqa: E731
        {"model": "S", "step": "plain", "median_s": plain, "images_per_s": 8 / plain, "repeats": 3, "warmup": 2,
         "peak_mib": 1000.0},
        {"model": "S", "step": "distill", "median_s": distill, "images_per_s": 8 / distill, "repeats": 3,
         "warmup": 2, "peak_mib": 1500.0},
        {"model": "S", "step": "remat", "median_s": 1.25 * plain, "images_per_s": 8 / plain / 1.25, "repeats": 3,
         "warmup": 2, "peak_mib": 600.0},
        {"model": "ConvNeXtTiny", "step": "plain", "median_s": peer, "images_per_s": 8 / peer, "repeats": 3,
         "warmup": 2, "peak_mib": 900.0},
        {"model": "S", "step": "paired", "plain_s": plain, "distill_s": 1.3 * plain, "D_paired": 1.3,
         "repeats": 3, "warmup": 2},
    ]
    table = train_step.markdown({"jax": rows(2.0, 2.4, 1.0), "torch": rows(2.0, 3.0, 4.0)}, batch=8)
    assert "| D_paired | the same, the two steps alternated in one process | <= 1.4 | 1.30 (met) | 1.30 (met) |" in table
    assert "paired" not in table.split("| ratio |")[0]  # not a throughput row
    assert "| D | time(distill step, S@448) / time(plain step, S@448) | <= 1.4 | 1.20 (met) | 1.50 (missed) |" in table
    assert "| R | train thr(S@448) / train thr(ConvNeXtTiny@224) | (reported) | 0.50 | 2.00 |" in table
    assert "| M_remat | peak MiB(remat step) / peak MiB(plain step), S@448 | (reported) | 0.60 | 0.60 |" in table
    assert "| T_remat | time(remat step) / time(plain step), S@448 | (reported) | 1.25 | 1.25 |" in table
    assert "| S | 448 | remat | 3.20 | 2.50 | 600 |" in table
    assert "MALLOC_TRIM_THRESHOLD_" not in table
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4294967296")  # non-default allocator: the footer says so
    assert train_step.markdown({"jax": rows(2.0, 2.4, 1.0)}, batch=8).endswith(
        "; MALLOC_TRIM_THRESHOLD_=4294967296")
    retained = [{**r, "retain_freed_memory": True} for r in rows(2.0, 2.4, 1.0)]
    assert train_step.markdown({"jax": retained}, batch=8).endswith(
        "; MALLOC_TRIM_THRESHOLD_=4294967296; process_settings.retain_freed_memory() in every model's process")


_LIVE_RANGES = """HloLiveRange (max 3):
  InstructionSequence:
    0:p
    1:a
    2:b
    3:c
  BufferLiveRange:
    a{}:1-2
    b{}:2-3
    wrapped_broadcast{}:2-2
    c{}:3-3
"""
_BUFFERS = """allocation 0: size 8, parameter 0, shape |f32[2]| at ShapeIndex {}:
 value: <0 p @0> (size=8,offset=0): f32[2]{0}
allocation 1: size 112, preallocated-temp:
 value: <1 a @0> (size=64,offset=0): f32[16]{0}
 value: <2 b @0> (size=32,offset=64): f32[8]{0}
 value: <3 wrapped_broadcast @0> (size=16,offset=96): f32[4]{0}
 value: <4 c @0> (size=32,offset=64): f32[8]{0}
"""
_HLO = """  %a = f32[16]{0} fusion(%p), metadata={op_name="jit(inference)/stage1_block1/conv"}
  %b = f32[8]{0} fusion(%a), metadata={op_name="jit(inference)/stem/add"}
  %wrapped_broadcast = f32[4]{0} fusion(%constant)
"""


def test_xla_memory_finds_the_peak_live_set_and_its_layers():
    xla_memory = load_script("benchmarks", "xla_memory")
    peak, where, at_peak = xla_memory.peak_live_set(_BUFFERS, _LIVE_RANGES, _HLO)
    assert peak == 64 + 32 + 16 and where == "stem"  # at position 2; parameters are not temporaries
    assert at_peak == [(64, "a", "f32[16]", "stage1_block1"), (32, "b", "f32[8]", "stem"),
                       (16, "wrapped_broadcast", "f32[4]", "-")]
    # A value that reuses a live value's bytes in place counts once: at position 3, b and c share them.
    shared = _LIVE_RANGES.replace("c{}:3-3", "c{}:2-3")
    assert xla_memory.peak_live_set(_BUFFERS, shared, _HLO)[0] == 64 + 32 + 16


def test_xla_memory_counts_fusions_and_parses_compiler_options():
    xla_memory = load_script("benchmarks", "xla_memory")
    hlo = """  %f1 = f32[4]{0} fusion(%p), kind=kLoop, calls=%fused_computation
  %f2 = f32[4]{0} fusion(%f1, %p), kind=kCustom, calls=%ynn_fusion, backend_config={"kind":"__ynn_fusion"}
  %f3 = f32[4]{0} fusion(%f2), kind=kInput, calls=%fused_reduce
  %c = f32[4]{0} copy(%f3)
"""
    assert xla_memory.count_fusions(hlo) == {"emitted": 2, "library": 1}
    assert xla_memory.count_fusions("") == {"emitted": 0, "library": 0}
    assert xla_memory.compiler_option("xla_cpu_use_fusion_emitters=false") == ("xla_cpu_use_fusion_emitters", False)
    assert xla_memory.compiler_option("xla_cpu_parallel_codegen_split_count=1") == (
        "xla_cpu_parallel_codegen_split_count", 1)
    assert xla_memory.compiler_option("xla_cpu_max_isa=AVX2") == ("xla_cpu_max_isa", "AVX2")
    for bad in ("xla_cpu_use_fusion_emitters", "fusion_emitters=false", "=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
            xla_memory.compiler_option(bad)
    with pytest.raises(SystemExit):  # one convolution alone is not compiled with the option
        xla_memory.main(["--stem-convs", "--compiler-option", "xla_cpu_use_fusion_emitters=false"])


@pytest.mark.runs_in("jax")  # XLA's buffer assignment, read in a child process
def test_xla_memory_of_a_real_compiled_model():
    xla_memory = load_script("benchmarks", "xla_memory")
    # Compiled with an XLA option for its executable alone (the older emitters: the compiler needs less).
    spec = {"model": "tiny", "resolution": 64, "batch": 2,
            "compiler_options": {"xla_cpu_use_fusion_emitters": False}}
    result = xla_memory.run_worker(xla_memory.__file__, spec, "jax", "tiny")
    assert "error" not in result, result.get("error")
    # The live set at the peak fits in XLA's temporary buffer and holds its largest buffers.
    assert 0 < result["largest_at_peak"][0][0] <= result["peak_live"] <= result["temp"]
    assert result["arguments"] > 4 * 2 * 64 * 64 * 3  # the weights and the input batch
    assert 0 <= result["broadcasts_at_peak"] <= result["peak_live"]
    # The resident-memory readings (rss_*) are the OS allocator's: reported in the table below, not
    # asserted (a heap that already holds freed pages maps less than XLA's temporary buffer anew).
    # Every layer of the tiny model compiles to fusions; its matmuls and convolutions go to YNNPACK.
    fusions = result["fusions"]
    assert fusions["emitted"] > 0 and fusions["library"] >= 0
    table = xla_memory.markdown([result])
    assert (f"| HIRI-ViT-tiny | 64 | {fusions['emitted']} + {fusions['library']} | "
            f"{result['arguments'] / 2**20:.0f} | {result['temp'] / 2**20:.0f} |") in table
    assert "; compiler option xla_cpu_use_fusion_emitters=False for the executable" in table
    # Deleting the executable gives back part of what compiling kept (the rest is the C heap's).
    assert "rss_input_mib" in result and "rss_executable_mib" in result
    assert (f"| HIRI-ViT-tiny | 64 | {result['rss_model_mib']:.0f} | {result['rss_input_mib']:.0f} | "
            f"{result['rss_compiling_mib']:.0f} | {result['rss_program_kept_mib']:.0f} | "
            f"{result['rss_executable_mib']:.0f} | {result['rss_one_call_mib']:.0f} |") in table


@pytest.mark.runs_in("jax")  # one stem convolution alone, in a child process
def test_xla_memory_measures_a_stem_convolution_alone():
    xla_memory = load_script("benchmarks", "xla_memory")
    spec = {"model": "S", "resolution": 64, "conv": 1, "batch": 1, "repeats": 2}
    result = xla_memory.run_worker(xla_memory.__file__, spec, "jax", "hi_conv")
    assert "error" not in result, result.get("error")
    # S's stem is 32 wide; hi_conv reads the half grid and halves it again.
    assert result["name"] == "hi_conv, lo_conv1" and result["shape"] == "32->32 3x3/2 on 32x32"
    assert result["output"] == 4 * 16 * 16 * 32 and result["median_s"] > 0
    assert isinstance(result["ynnpack"], bool) and result["rss_one_call_mib"] >= 0
    table = xla_memory.conv_markdown([result])
    assert f"| hi_conv, lo_conv1 | 32->32 3x3/2 on 32x32 | {'yes' if result['ynnpack'] else 'no'} | " in table
    with pytest.raises(SystemExit):
        xla_memory.main(["--stem-convs", "--repeats", "0"])


def test_stage_latency_times_a_training_step_per_part(capsys):
    stage_latency = load_script("benchmarks", "stage_latency")
    stage_latency.main(["--variant", "tiny", "--resolution", "64", "--batch", "2", "--warmup", "1",
                        "--repeats", "1", "--train", "--jit", "auto"])
    out = capsys.readouterr().out
    assert "training step (forward + backward + AdamW)" in out
    rows = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
            if line.startswith(("stem", "stage", "head", "total"))}
    assert {"stem", "stage1", "stage3_downsample", "stage5", "head", "total"} <= set(rows)
    # Each part's row is its increment over the previous cut (one step each: noise can make
    # a small part's negative); they add up to the whole model's step.
    assert rows["total"] > 0
    assert sum(v for k, v in rows.items() if k != "total") == pytest.approx(rows["total"], abs=0.1 * len(rows))
    with pytest.raises(SystemExit):
        stage_latency.main(["--train", "--folded"])
    # A noisy negative increment, a share past -1000 % and a wide total still read back column by column.
    lines = stage_latency.table([("stem", 2.5, 1e9), ("stage1", -2.368, 0), ("head", 0.05, 2e6)], 8)
    read = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert read["stage1"] == ["-2368.0", "-1301.1%", "0.000", "nan"]
    assert read["stem"][:2] == ["2500.0", "1373.6%"] and read["total"] == ["182.0", "1.002", "44.0"]


def test_augmentation_speed_table_and_ratios():
    bench = load_script("benchmarks", "augmentation_speed")
    row = lambda layer, build, batch, eager: {  # noqa: E731
        "layer": layer, "build_s": build, "tf_data_s": batch, "eager_s": eager, "eager_per_image_s": 2 * eager,
        "size": 224, "batch": 8, "warmup": 1, "repeats": 5}
    table = bench.markdown({"jax": [row("keras", 20.0, 0.8, 1.6), row("keras_hiri", 2.0, 0.4, 0.8)],
                            "torch": [row("keras", 1.0, 0.5, 0.5), {"layer": "keras_hiri", "error": "x"}]},
                           batch=8)
    assert "| jax | keras | 20.00 | 0.800 | 1.600 | 3.200 | 2.00x |" in table
    assert "| torch | keras_hiri | failed | | | | |" in table
    assert "jax: build 10.00x, tf.data batch 2.00x, eager batch 2.00x" in table
    assert "torch:" not in table  # no ratio from a failed row
    assert "batch 8 of 224x224 images" in table


def _gpu_row(model, resolution, dtype, images_per_s, loop=None, **extra):
    row = {"model": model, "resolution": resolution, "dtype": dtype, "images_per_s": images_per_s,
           "median_s": 128 / images_per_s, "gmacs": 2.0, "device": "GPU X", "float32_mode": "mode Y", **extra}
    return {**row, "loop_images_per_s": loop} if loop else row


def test_gpu_throughput_ratios_prefer_the_bare_forward_loop():
    bench = load_script("benchmarks", "gpu_throughput")
    results = [
        {"model": "GEMM", "resolution": 8192, "dtype": "bfloat16", "tmac_per_s": 100.0, "device": "GPU X",
         "float32_mode": "mode Y"},
        _gpu_row("S", 448, "bfloat16", 1000, loop=2000),
        _gpu_row("S", 224, "bfloat16", 3000),  # no loop measured: predict_on_batch's figure
        _gpu_row("S", 224, "bfloat16", 2400, loop=2500, pinned=True),
        _gpu_row("ConvNeXtTiny", 224, "bfloat16", 2500, loop=4000),
        {"model": "B", "resolution": 448, "dtype": "bfloat16", "error": "out of memory"},
    ]
    ratios = bench.ratios(results, "bfloat16")
    assert ratios["P1_gpu"] == pytest.approx(2000 / 4000)
    assert ratios["P2_plain_gpu"] == pytest.approx(3000 / 2000)
    assert ratios["P2_gpu"] == pytest.approx(2500 / 2000)
    assert ratios["S448_vs_paper"] == pytest.approx(2000 / bench.PAPER_S448)
    assert bench.ratios(results, "float16") == {}
    table = bench.markdown({"jax": results}, batch=128, command="python benchmarks/gpu_throughput.py")
    assert "### jax on GPU X, batch 128" in table
    assert "| dense GEMM 8192³ | — | 100 TMAC/s |" in table
    assert "| HIRI-ViT-S@448 | 1000 / 2000 | 4 (4 %) |" in table  # 2 GMACs x 2000 img/s
    assert "| HIRI-ViT-B@448 | failed | — |" in table
    assert "| HIRI-ViT-S@224 pinned | 2400 / 2500 |" in table
    assert "P1_gpu = 0.50 (target >= 1.0)" in table and "- float32 mode: mode Y" in table


def test_gpu_throughput_runs_the_ratio_rows_first():
    bench = load_script("benchmarks", "gpu_throughput")
    args = argparse.Namespace(
        variants=["B", "S"], resolutions=[224, 448], peers=["ConvNeXtBase", "ConvNeXtTiny"],
        dtypes=["float32", "float16"], batch=4, warmup=1, repeats=2, allow_cpu=True, gemm_size=64,
        pinned=True, torch_compile=False)
    rows = [(j["model"], j["resolution"]) for j in bench.jobs(args)][::2]
    assert rows == [("GEMM", 64), ("S", 448), ("ConvNeXtTiny", 224), ("S", 224), ("S", 224), ("B", 448),
                    ("B", 224), ("ConvNeXtBase", 224)]
    assert [j["pinned"] for j in bench.jobs(args)][::2] == [False, False, False, True, False, False, False, False]
    assert [j["dtype"] for j in bench.jobs(args)][:2] == ["float32", "float16"]
    assert bench.jobs(argparse.Namespace(**{**vars(args), "gemm_size": 0}))[0]["model"] == "S"
    assert not any(j["pinned"] for j in bench.jobs(argparse.Namespace(**{**vars(args), "pinned": False})))
    assert not any(j["torch_compile"] for j in bench.jobs(args))
    compiled = bench.jobs(argparse.Namespace(**{**vars(args), "torch_compile": True}))
    assert all(j["torch_compile"] for j in compiled)
    table = bench.markdown({"torch": [_gpu_row("S", 448, "float32", 100, torch_compile=True)]}, batch=4,
                           command="python benchmarks/gpu_throughput.py --torch-compile")
    assert "- torch.compile: `predict_on_batch` with `jit_compile=True`" in table
    assert "torch.compile" not in bench.markdown({"torch": [_gpu_row("S", 448, "float32", 100)]}, batch=4,
                                                 command="python benchmarks/gpu_throughput.py")


def test_torch_ops_counts_each_kind_and_its_multiply_adds():
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile

    torch_ops = load_script("benchmarks", "torch_ops")
    a, b, bias = torch.ones(64, 32), torch.ones(32, 16), torch.zeros(16)
    x, w = torch.ones(2, 8, 20, 20), torch.ones(12, 8, 3, 3)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(2):  # two "forward passes": the figures are per call
            torch.mm(a, b)
            torch.addmm(bias, a, b)
            y = torch.nn.functional.conv2d(x, w, stride=2, padding=1)  # 10x10 output grid
            torch.nn.functional.gelu(y) + y
    kinds, top = torch_ops.summarise(prof.events(), calls=2)
    assert kinds["GEMM"]["macs"] == 2 * 64 * 32 * 16
    assert kinds["convolution"]["macs"] == 2 * 12 * 10 * 10 * 8 * 3 * 3
    assert kinds["GELU"]["ms"] > 0 and kinds["GELU"]["macs"] == 0
    assert kinds["other element-wise"]["ms"] > 0  # the add
    assert {"GEMM", "convolution", "GELU"} <= {op["kind"] for op in top}
    assert all(first["ms"] >= second["ms"] for first, second in zip(top, top[1:]))
    assert torch_ops.kind_of("aten::view") == torch_ops.REST


def test_torch_ops_profiles_a_real_model_in_a_worker(tmp_path, capsys):
    torch_ops = load_script("benchmarks", "torch_ops")
    spec = {"model": "tiny", "resolution": 64, "batch": 2, "warmup": 1, "repeats": 1, "top": 3}
    result = torch_ops.run_worker(torch_ops.__file__, spec, "torch", "tiny")
    assert "error" not in result, result.get("error")
    kinds = result["kinds"]
    assert kinds["GEMM"]["macs"] > 0 and kinds["convolution"]["macs"] > 0 and len(result["top"]) == 3
    # The multiply-adds counted from the profiler's records are the model's (keras_hiri.profile
    # counts one image).
    counted = sum(kind["macs"] for kind in kinds.values())
    assert counted == pytest.approx(result["gmacs"] * 1e9 * spec["batch"], rel=0.02)
    table = torch_ops.markdown([result, {**spec, "model": "ConvNeXtTiny", "error": "boom"}])
    assert "| GEMM | " in table and "HIRI-ViT-tiny@64 ms/batch" in table
    assert table.rstrip().endswith("failed: ConvNeXtTiny@64")
    # A stored run is printed and drawn again without measuring; the hatched end of the bar
    # is the timed median's excess over the profiled ops.
    pytest.importorskip("matplotlib")
    stored, png = tmp_path / "run.json", tmp_path / "run.png"
    stored.write_text(json.dumps({"torch": [result, {**spec, "model": "ConvNeXtTiny", "error": "boom"}]}))
    capsys.readouterr()
    torch_ops.main(["--from-json", str(stored), "--plot", str(png)])
    assert capsys.readouterr().out.startswith(table)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    profiled = sum(kind["ms"] for kind in kinds.values())
    assert torch_ops.plot([result], str(png)) == [pytest.approx(max(0.0, 1e3 * result["median_s"] - profiled))]
    with pytest.raises(ValueError, match="every row failed"):
        torch_ops.plot([{**spec, "error": "boom"}], str(png))


def test_build_time_table_pairs_host_and_keras_rows():
    bench = load_script("benchmarks", "build_time")
    args = argparse.Namespace(models=["S@224", "ConvNeXtTiny@224"])
    assert bench.rows(args) == [{"model": "S@224", "initializers": "host"},
                                {"model": "S@224", "initializers": "keras"},
                                {"model": "ConvNeXtTiny@224", "initializers": "keras"}]
    results = {"jax": [
        {"model": "S@224", "initializers": "host", "first_s": 2.0, "second_s": 1.0, "xla_compiles": 18,
         "xla_compile_s": 0.4},
        {"model": "S@224", "initializers": "keras", "first_s": 13.0, "second_s": 1.2, "xla_compiles": 130,
         "xla_compile_s": 10.0},
        {"model": "ConvNeXtTiny@224", "initializers": "keras", "error": "boom"},
    ]}
    table = bench.table(results)
    assert "| jax | S@224 | 2.00 / 13.00 | 6.50 | 1.00 / 1.20 | 18 (0.4) / 130 (10.0) |" in table
    assert "| jax | ConvNeXtTiny@224 | failed | - | - | - |" in table


def test_build_time_worker_builds_with_the_initializers_its_row_names(monkeypatch):
    import keras

    from keras_hiri import ops as hiri_ops

    bench = load_script("benchmarks", "build_time")
    host_normal, draws = hiri_ops.host_normal, []
    monkeypatch.setattr(hiri_ops, "host_normal", lambda *args: draws.append(1) or host_normal(*args))
    result = bench.worker({"model": "S@224", "initializers": "keras"})
    assert draws == []  # Keras' sampler on every backend
    assert result["first_s"] > 0 and result["second_s"] > 0 and result["backend"] == keras.backend.backend()


def test_torch_ops_counts_each_convolution_once_in_either_path():
    """A batch of one takes PyTorch's slow path (``thnn_conv2d`` wrapping
    ``_slow_conv2d_forward``, whose arguments come in another order than
    ``mkldnn_convolution``'s); the multiply-adds are counted once, from the
    records the profiler gives (the HR stem's first convolution, one image)."""
    torch_ops = load_script("benchmarks", "torch_ops")
    shapes = [[1, 3, 64, 64], [8, 3, 3, 3], [], [8], [], []]
    args = [None, None, [3, 3], None, [2, 2], [1, 1]]
    want = 32 * 32 * 8 * 3 * 3 * 3
    assert torch_ops.macs("aten::_slow_conv2d_forward", shapes, args) == want
    assert torch_ops.macs("aten::thnn_conv2d", shapes, args) == 0
    mkldnn = [None, None, None, [1, 1], [2, 2], [1, 1], 1]
    assert torch_ops.macs("aten::mkldnn_convolution", [[1, 3, 64, 64], [8, 3, 3, 3], [8]], mkldnn) == want


def test_timm_peers_table_and_the_torchvision_stand_in(monkeypatch):
    import sys

    timm_peers = load_script("benchmarks", "timm_peers")
    rows = [{"model": m, "resolution": r, "params": 28e6, "median_s": s, "images_per_s": 8 / s, "repeats": 5,
             "warmup": 2} for (m, r), s in zip(timm_peers.ROWS, (0.6, 0.18, 0.4, 0.54, 2.2, 2.8))]
    table = timm_peers.markdown({"torch": rows}, batch=8)
    assert "| thr(HIRI-ViT-S@448) / thr(ConvNeXt-T (timm)@224) | 0.67 |" in table
    assert "| thr(HIRI-ViT-S@448) / thr(PVTv2-B2 (timm)@224) | 0.90 |" in table
    assert "| PVTv2-B2 (timm) | 448 | 28.0 | 2.86 | 2800 |" in table
    before = {n: m for n, m in sys.modules.items() if n.startswith("torchvision")}
    monkeypatch.setattr(sys, "meta_path", [timm_peers._TorchvisionStandIn(), *sys.meta_path])
    try:
        for name in before:
            del sys.modules[name]
        from torchvision.ops.misc import FrozenBatchNorm2d  # what timm imports at import time
        from torchvision.transforms import InterpolationMode

        assert isinstance(FrozenBatchNorm2d, type) and InterpolationMode.NEAREST is not None
    finally:  # the stand-in leaves with the test
        for name in [n for n in sys.modules if n.startswith("torchvision")]:
            del sys.modules[name]
        sys.modules.update(before)


def test_table9_throughput_table_gives_both_ratios_per_network():
    table9 = load_script("benchmarks", "table9_throughput")
    times = {(224, False): 0.2, (448, False): 1.0, (448, True): 0.3}
    results = [{"network": n, "variant": v, "side": side, "hiri": hiri, "median_s": times[(side, hiri)],
                "repeats": 3, "warmup": 1} for n, v, side, hiri in table9.ROWS]
    table = table9.markdown({"torch": results}, 4)
    assert "| torch | pvt_v2 b2 | 200 | 1000 | 300 | 1.50 | 5.00 |" in table
    assert "| torch | davit tiny | 200 | 1000 | 300 | 1.50 | 5.00 |" in table
    failed = table9.markdown({"jax": [{**results[0], "error": "x"}] + results[1:3]}, 4)
    assert "| jax | hrnet w18 | failed | 1000 | 300 | - | - |" in failed


def test_table9_throughput_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    table9 = load_script("benchmarks", "table9_throughput")
    results = [{"network": n, "variant": v, "side": side, "hiri": hiri, "median_s": 0.1 * side / 224, "batch": 4,
                "repeats": 3, "warmup": 1}
               for n, v, side, hiri in table9.ROWS]
    path = tmp_path / "speed.png"
    with open(tmp_path / "results.json", "w") as f:
        json.dump({"torch": results}, f)
    table9.main(["--from-json", str(tmp_path / "results.json"), "--plot", str(path)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table9_equal_cost_table_compares_within_a_backend():
    table9 = load_script("benchmarks", "table9_equal_cost")
    base = {"params": 1.2e6, "gmacs": 0.05, "train_images": 8, "val_images": 4, "epochs": 1, "steps": 2,
            "learning_rate": 2e-3, "seed": 0}
    results = [{**base, "model": "plain", "side": 64, "val_top1": 0.50, "train_s": 10.0},
               {**base, "model": "hiri", "side": 128, "val_top1": 0.625, "train_s": 15.0},
               {**base, "seed": 1, "model": "plain", "side": 64, "val_top1": 0.50, "train_s": 10.0},
               {**base, "seed": 1, "model": "hiri", "side": 128, "val_top1": 0.5, "train_s": 20.0}]
    table = table9.markdown({"jax": results}, 32)
    assert "| jax | +12.5, +0.0 | +6.2 | 1.75 |" in table
    assert "| jax | 0 | small PVTv2 + HIRI | 128 | 1.20 | 0.050 | 0.625 | 15 |" in table


def test_table9_equal_cost_halves_the_same_photographs():
    pytest.importorskip("skimage")
    table9 = load_script("benchmarks", "table9_equal_cost")
    full, labels, _ = table9._task("validation", 20, 128)
    half, same_labels, _ = table9._task("validation", 20, 64)
    assert full.shape == (20, 128, 128, 3) and half.shape == (20, 64, 64, 3)
    np.testing.assert_array_equal(labels, same_labels)
    np.testing.assert_allclose(half[:, 0, 0], full[:, :2, :2].mean(axis=(1, 2)), rtol=1e-6)


def test_table9_cost_table_checks_the_tolerances():
    table9 = load_script("benchmarks", "table9_cost")
    rows = [{"network": "pvt_v2", "variant": "b2", "hiri": False, "params": 25_362_856, "macs": 4_026_734_592,
             "torch_params": 25_362_856, "torch_macs": 4_026_734_592},
            {"network": "davit", "variant": "tiny", "hiri": True, "params": 30_000_000, "macs": 4_953_967_104,
             "torch_params": 30_000_000, "torch_macs": 4_953_967_104},
            {"network": "pvt_v2", "variant": "b2", "hiri": False, "timm": True, "params": 25_362_856,
             "macs": 4_026_734_592, "max_abs_diff": 4e-7}]
    table = table9.table(rows)
    assert "| pvt_v2 b2 | 224 | 25.363 | 25.363 | 25.4 | yes | 4.027 | 4.027 | 4.0 | yes |" in table
    assert "| davit tiny + HIRI | 448 | 30.000 | 30.000 | 28.5 | **no** |" in table
    assert "| pvt_v2_b2 | 25,362,856 | 4.0267 | yes | 4.0e-07 |" in table


def test_table9_timm_keys_name_every_kind_of_weight():
    table9 = load_script("benchmarks", "table9_cost")
    assert table9.timm_key("pvt_v2", "stem/stem_conv/kernel") == "patch_embed.proj.weight"
    assert table9.timm_key("pvt_v2", "stage2_block3/stage2_block3_attn/stage2_block3_attn_kv/bias") == \
        "stages.1.blocks.2.attn.kv.bias"
    assert table9.timm_key("pvt_v2", "stage1_block1/stage1_block1_sr_norm/gamma") == "stages.0.blocks.0.attn.norm.weight"
    assert table9.timm_key("pvt_v2", "stage3_downsample/stage3_downsample_conv/kernel") == \
        "stages.2.downsample.proj.weight"
    assert table9.timm_key("pvt_v2", "stage4_norm/beta") == "stages.3.norm.bias"
    assert table9.timm_key("davit", "stage3_block4/stage3_block4_cpe2/kernel") == "stages.2.blocks.1.1.cpe2.proj.weight"
    assert table9.timm_key("davit", "head_norm/gamma") == "head.norm.weight"
    assert table9.timm_key("davit", "predictions/kernel") == "head.fc.weight"
