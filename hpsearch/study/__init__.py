"""A study's life on a storage: its records and their keys (``record``), the budget and
retries (``budget``), the sampler and pruner a worker builds (``samplers``) with history
windows on large studies (``windows``), its creation, copies and deletion (``lifecycle``),
a first study file drafted from a user's data (``drafts``), and the worker loop that claims,
trains and records trials and fails stale ones (``worker``).

It owns the domain rules: what counts against the budget, what a retry keeps, which
attributes a trial carries. It imports the storage, training and spec layers, never
launch, results or cli.
"""
