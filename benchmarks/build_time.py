"""Model construction time: host-drawn weights against Keras' sampler.

Building a model draws every weight. Keras' initializers sample on the
backend; on JAX each new kernel shape then compiles an XLA program for the
sampler and more for its scale and shift, and HIRI-ViT-S has many distinct
shapes. keras_hiri's ``TruncatedNormal`` and ``VarianceScaling``
(``keras_hiri/layers/init.py``) draw the same distributions with NumPy on the host
on JAX (``keras_hiri.ops.draws_on_host``); a ``keras`` row builds with the
generic op (Keras' own sampler) forced on every backend
(``benchmarks/implementations.py``), a ``host`` row with the host draw forced.

Every (backend, model, initializers) row is a fresh process, which first runs
one backend op (the backend's own start-up is not counted), then times the
first build of the model and a second one in the same process (what a test
suite or a notebook pays again). On JAX it also counts the XLA compilations
of the first build (``jax.monitoring``). ConvNeXtTiny from
``keras.applications`` (``weights=None``, Keras' initializers) is the
yardstick.

    python benchmarks/build_time.py
    python benchmarks/build_time.py --backends jax --models S@448 --json build_time.json
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import benchmark_parser, build, run_and_report, run_worker  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
MODELS = ("S@224", "S@448", "ConvNeXtTiny@224")


def worker(spec):
    import keras

    keras.ops.convert_to_numpy(keras.ops.ones((2,)) + 1)  # the backend's start-up, not timed
    compiles = {"count": 0, "seconds": 0.0}
    if keras.backend.backend() == "jax":
        import jax.monitoring

        def listener(event, duration, **kwargs):
            if event.endswith("backend_compile_duration"):
                compiles["count"] += 1
                compiles["seconds"] += duration

        jax.monitoring.register_event_duration_secs_listener(listener)
    from implementations import forced_host_draws, generic

    keras.utils.set_random_seed(0)
    model, size = spec["model"].split("@")
    times = []
    choice = generic("init") if spec["initializers"] == "keras" else forced_host_draws()
    with choice:
        for _ in range(2):
            start = time.perf_counter()
            built = build({"model": model, "resolution": int(size)})  # the benchmarks' one builder
            times.append(time.perf_counter() - start)
            del built
    result = {**spec, "backend": keras.backend.backend(), "first_s": times[0], "second_s": times[1]}
    if keras.backend.backend() == "jax":
        result.update(xla_compiles=compiles["count"], xla_compile_s=compiles["seconds"])
    return result


def rows(args):
    out = []
    for model in args.models:
        kinds = ["keras"] if model.startswith("ConvNeXt") else ["host", "keras"]
        out += [{"model": model, "initializers": kind} for kind in kinds]
    return out


def run_backend(backend, args, progress):
    results = []
    for spec in rows(args):
        results.append(run_worker(__file__, spec, backend, f"{spec['model']} ({spec['initializers']})"))
        progress.add(1)
    return results


def _find(results, model, kind):
    return next((r for r in results if r["model"] == model and r["initializers"] == kind
                 and "error" not in r), None)


def table(all_results, batch=None):
    lines = ["| backend | model | first build s, host / Keras samplers | Keras / host | second build s, "
             "host / Keras | XLA compiles (s), host / Keras |",
             "|---|---|---:|---:|---:|---:|"]
    for backend, results in all_results.items():
        for model in dict.fromkeys(r["model"] for r in results):
            host, kras = _find(results, model, "host"), _find(results, model, "keras")

            def cell(key, fmt="{:.2f}"):
                return " / ".join(fmt.format(r[key]) if r and key in r else "-" for r in (host, kras))

            ratio = f"{kras['first_s'] / host['first_s']:.2f}" if host and kras else "-"
            if host is None and kras is None:
                lines.append(f"| {backend} | {model} | failed | - | - | - |")
                continue
            compiles = " / ".join(f"{r['xla_compiles']} ({r['xla_compile_s']:.1f})" if r and "xla_compiles" in r
                                  else "-" for r in (host, kras))
            lines.append(f"| {backend} | {model} | {cell('first_s')} | {ratio} | {cell('second_s')} | "
                         f"{compiles} |")
    lines += ["", "`python benchmarks/build_time.py " + " ".join(sys.argv[1:]) + "`: one fresh process per "
              "row; a ConvNeXt row has Keras' initializers only."]
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=0, repeats=1)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    run_and_report(args, len(rows(args)), run_backend, table)


if __name__ == "__main__":
    main()
