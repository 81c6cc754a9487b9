"""1. Genome switch vs re-merge, at the real layer width (hidden 2560, FFN 10240 / 9216).

Our search switches a candidate by writing the ratio buffer of the live hybrid. A re-merging
evolutionary tool builds merged weights for every candidate. For an output blend, the cheapest such
re-merge folds each ratio into the two down projections ((1 - r) * W_down_F, r * W_down_M), into
preallocated buffers: a lower bound on what re-merging costs (a real tool also writes and reloads the
whole model). Both are timed in the same process, on the same layers.
"""

import random

import torch

from bench.common import darwin_model, median_seconds, row

LAYERS = 4


def run() -> dict:
    model = darwin_model(hidden=2560, father_ffn=10240, mother_ffn=9216, layers=LAYERS, vocab=256,
                         weights_only=True)
    rng = random.Random(0)
    genomes = [[rng.uniform(0, 0.5) for _ in range(LAYERS)] for _ in range(64)]
    it = iter(genomes * 1000)

    switch = median_seconds(lambda: model.set_ratios(next(it)), repeat=500)

    layers = model.model.layers
    pairs = [(layer.mlp.down_proj.weight, layer.mother_ffns.for_layer(i).down_proj.weight)
             for i, layer in enumerate(layers)]
    buffers = [(torch.empty_like(f), torch.empty_like(m)) for f, m in pairs]

    def remerge():
        genome = next(it)
        with torch.no_grad():
            for r, (f, m), (bf, bm) in zip(genome, pairs, buffers):
                torch.mul(f, 1 - r, out=bf)
                torch.mul(m, r, out=bm)

    merge = median_seconds(remerge, repeat=20)
    ratio = merge / switch
    print(f"   genome switch {switch * 1e6:.1f} us, re-merge of {LAYERS} layers {merge * 1e3:.2f} ms: "
          f"switching is {ratio:,.0f}x faster (target >= 100x)")
    return {"genome_switch_speedup": row(ratio, "x", ">= 100", switch_us=round(switch * 1e6, 2),
                                         remerge_ms=round(merge * 1e3, 3), layers=LAYERS)}


if __name__ == "__main__":
    run()
