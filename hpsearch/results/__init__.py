"""Reading a study back: open studies, tables, status, the best config (``reading``),
retraining the best trial (``retrain``), the HTML report (``report``) and optuna-dashboard
on hpsearch's storage (``dashboard``).

Reading never writes and never imports torch (retraining imports it when called). It
imports launch (a study's Slurm jobs in its status) and below, never cli.
"""
