"""Darwin MRI: diagnose both parents before the search, trust-weight the genome, check the child after.

One job per file:

- `static.py`   per-tensor statistics of every father FFN and mapped mother FFN, read lazily from the shards
- `prompts.py`  the probe prompt sets (data in `probe_prompts.yaml`, with their license)
- `probe.py`    the probe run: father FFN branch vs mapped mother FFN branch on the same residual inputs
- `trust.py`    the MRI score, r_MRI, the trust-weighted ratio and the transplant snap
- `scan.py`     the `mri` stage: static + probe -> runs/<name>/mri/mri.json and its plot
- `health.py`   the `health` stage: the emitted child against both parents, layer by layer
- `mother_ffn.py` one mother FFN read alone from her shards (what the streaming probe and health check hold)
- `plots.py`    the MRI and health charts for the card
"""
