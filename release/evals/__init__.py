"""Benchmark fitness and final evaluation on lm-eval (CLIcK, MuSR, a synthetic task).

    suite = TaskSuite.from_spec(config.fitness, run_dir / "evals", seed)      # tasks + subsets, once
    fitness = Evaluator(model, tokenizer, suite, split="search", scorer="fast")
    for genome in ...: set ratios in place; fitness.evaluate().fitness       # forward passes only
    evaluate_models({"child": ..., "father": ..., "mother": ...}, suite, run_dir / "results.json")
"""

from release.evals.calibration import calibration_fitness
from release.evals.evaluator import EvalResult, Evaluator, weighted_fitness
from release.evals.final import ModelSpec, evaluate_models
from release.evals.suite import TaskSuite

__all__ = ["EvalResult", "Evaluator", "ModelSpec", "TaskSuite", "calibration_fitness", "evaluate_models",
           "weighted_fitness"]
