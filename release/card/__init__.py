"""Where the card is written: the child's model card (`model_card` for a cross-architecture child and the
sections both share, `weights_card` for a same-architecture one), its plots (`plots`) and the MRI and
health sections' display values (`mri_view`). Layouts live in `cards/*.j2`.

May import: config, errors, run/ (atomic files), breeders.merge_ops (the methods' papers) and mri.plots.
Never the Hub, the search or the pipeline.
"""
