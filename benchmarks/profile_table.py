"""Params and GMACs of HIRI-ViT-S/B/L at 224/384/448/768, beside the paper.

Counted from the built models by keras_hiri.profile (no formula typed in).
224 and 384 are shown twice: with the plain stride schedule (the library
default) and with pin_late_grids=True (the paper's setting, docs/DESIGN.md).
Also profiles the Table VIII block-type rows and the Table VII stem /
downsampling ablations at 448.

    python benchmarks/profile_table.py            # markdown tables on stdout
"""

import argparse

from keras_hiri import HiriViT, profile
from keras_hiri.variants import PAPER, TABLE_VIII, TABLE_VIII_PAPER

try:
    from tqdm import tqdm
except ImportError:  # progress bar is optional
    def tqdm(iterable, **kwargs):
        return iterable


def _pct(ours, paper):
    return f"{100.0 * (ours - paper) / paper:+.1f}%"


def variant_rows(letters, resolutions):
    jobs = []
    for letter in letters:
        for r in resolutions:
            jobs.append((letter, r, False))
            if r < 448:
                jobs.append((letter, r, True))
    rows = []
    for letter, r, pin in tqdm(jobs, desc="profiling", unit="model"):
        p = profile(HiriViT(letter, input_shape=(r, r, 3), pin_late_grids=pin))
        paper = PAPER[letter]
        rows.append(
            f"| {letter} | {r} | {'pinned' if pin else 'plain'} | {p.params_m:.2f} | "
            f"{paper['params_m']:.1f} | {_pct(p.params_m, paper['params_m'])} | {p.gmacs:.2f} | "
            f"{paper['gmacs'][r]:.1f} | {_pct(p.gmacs, paper['gmacs'][r])} |"
        )
    header = (
        "| variant | input | late grids | params (M) | paper | diff | GMACs | paper | diff |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    return header + "\n" + "\n".join(rows)


def ablation_rows():
    rows = []
    for label, block_types in TABLE_VIII.items():
        p = profile(HiriViT("S", block_types=block_types))
        paper_params, paper_gmacs = TABLE_VIII_PAPER[label]
        rows.append(
            f"| Table VIII {label} | {p.params_m:.2f} | {paper_params} | {p.gmacs:.2f} | {paper_gmacs} |"
        )
    for label, kwargs in [
        ("stem: Conv-stem", {"stem": "conv"}),
        ("stem: ViT-stem", {"stem": "vit"}),
        ("downsampling: plain strided 3x3", {"downsample": "plain"}),
    ]:
        p = profile(HiriViT("S", **kwargs))
        rows.append(f"| S with {label} | {p.params_m:.2f} | - | {p.gmacs:.2f} | - |")
    header = "| HIRI-ViT-S @448 row | params (M) | paper | GMACs | paper |\n|---|---|---|---|---|"
    return header + "\n" + "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="SBL")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 384, 448, 768])
    parser.add_argument("--no-ablations", action="store_true")
    args = parser.parse_args(argv)
    print(variant_rows(args.variants, args.resolutions))
    if not args.no_ablations:
        print()
        print(ablation_rows())


if __name__ == "__main__":
    main()
