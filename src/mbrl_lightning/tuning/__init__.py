"""Hyperparameter studies: Optuna trials that are MLflow runs nested under the study's run."""

from mbrl_lightning.tuning.pruning import OptunaPruning
from mbrl_lightning.tuning.search_space import Parameter, SearchSpace, load_search_space
from mbrl_lightning.tuning.study import StudyPlan, default_storage, open_storage, run_workers, write_best_config

__all__ = ["OptunaPruning", "Parameter", "SearchSpace", "StudyPlan", "default_storage", "load_search_space",
           "open_storage", "run_workers", "write_best_config"]
