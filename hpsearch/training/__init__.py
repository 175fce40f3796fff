"""Training runs, all of hpsearch's torch code: data sets as cached tensors (``data``), the
MLP and a population of them (``model``), per-member losses, optimizers and schedules
(``optim``), one run or a population of runs (``trainer``) and saved models (``saved``).

It imports only :mod:`hpsearch.spec` of hpsearch: it knows nothing of Optuna, studies or
storages, so a notebook can train a config alone.
"""
