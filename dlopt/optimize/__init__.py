"""`dlopt optimize`: one measured search over prune ratio, residual blocks, precision, runtime and threads (Optuna,
multi-objective: latency and accuracy drop under the user's goal), every built file cached once per study, the pick
re-timed and re-verified here. See docs/optimize.md."""

from dlopt.optimize.config import Goal, OptimizeConfig, Precision, Runtime

__all__ = ["Goal", "OptimizeConfig", "Precision", "Runtime", "run_optimize"]


def __getattr__(name: str):  # run_optimize imports the stages: only when asked for
    if name == "run_optimize":
        from dlopt.optimize.stage import run_optimize

        return run_optimize
    raise AttributeError(name)
