"""Workers: a worker process's start-up (``worker``), workers forked from a launcher that has
imported torch (``standby``), the ``--gpus`` flag read without torch (``slots``), a pool of
them on this machine (``pool``, launched by ``local``), and a job array on a Slurm cluster
(``slurm``).

It imports the study layer and below, never results or cli: each launch is a function a
notebook can call, the command line only prints its progress.
"""
