"""Training runs, all of hpsearch's torch code: data sets as cached tensors (``data``), the
MLP and a population of them (``model``), per-member losses, optimizers and schedules
(``optim``), one run or a population of runs (``trainer``) and saved models (``saved``).
A user's own data is read, checked and split without torch (``sources``, with ``tables``
and ``images``), so that a study can be created on it before torch loads.

It imports only :mod:`hpsearch.spec` of hpsearch: it knows nothing of Optuna, studies or
storages, so a notebook can train a config alone.
"""
