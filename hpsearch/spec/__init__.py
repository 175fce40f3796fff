"""What a user asks for, validated: the lowest layer.

It owns the names a config may choose (``choices``), every trainer setting (``config``), the
wording of a validation problem (``validation``), safe and bounded YAML (``yamlfile``), the
search space (``space``), the samplers and pruners a file may name with their options
(``components``), a user's data source (``datasource``), what each task trains with and is
judged by (``tasks``), the study-file schema and the frozen ``StudySpec`` it yields
(``studyfile``) and the defaults several layers name (``defaults``). It imports no other
layer of hpsearch and neither torch nor Optuna: a bad study file is rejected before either
loads.
"""
