"""Where a candidate is scored: CMA-ES over a breeder's genome space (`cmaes`), the fitness on the live
model (`fitness`), cheap estimates of it from a few items (`estimators/`: IRT anchors, racing), scoring on
Ray workers (`distributed/`), and the live dashboard (`tracking`, `tracking_space`).

May import: config, errors, device, run/, breeders (the live model), evals (the scorers), card.plots (the
dashboard's genome image) and hub/ (the dashboard's Space). Never the pipeline.
"""
