"""Benchmark fitness and final evaluation on any lm-eval task (CLIcK, MuSR and a synthetic task built in).

    suite = TaskSuite.from_spec(config.fitness, run_dir / "evals", seed)      # names resolved, tasks + subsets, once
    fitness = Evaluator(model, tokenizer, suite, split="search", scorer="fast")
    for genome in ...: set ratios in place; fitness.evaluate().fitness       # forward passes only
    evaluate_models({"child": ..., "father": ..., "mother": ...}, suite, run_dir / "eval" / "results.json")
                                                   # + lm-eval's results files in run_dir/eval/eval_results/

Files: names (where lm-eval finds a name), benchmarks (aliases, local-record wrappers, what a score means),
suite (tasks and subsets), scorer (fast and stock lm-eval models), evaluator (one evaluation), final (the
three models on the held-out split), lm_eval_results (lm-eval's results format in and out).
"""

from release.evals.calibration import calibration_fitness
from release.evals.evaluator import EvalResult, Evaluator, weighted_fitness
from release.evals.final import ModelSpec, evaluate_models
from release.evals.suite import TaskSuite

__all__ = ["EvalResult", "Evaluator", "ModelSpec", "TaskSuite", "calibration_fitness", "evaluate_models",
           "weighted_fitness"]
