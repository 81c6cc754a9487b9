"""Scale-out: score search candidates on Ray actors, each holding one live search model.

Distributed evaluation is a way of running the fitness, not a second search: CMA-ES, the log and the
checkpoint stay in the driver (release.search.cmaes); workers receive genomes and return scores.

    cluster.py  start or join Ray (one-line errors for a missing Ray or an unreachable cluster)
    worker.py   the actor: builds the live model once, then scores genomes
    pool.py     the driver's side: hands candidates to free workers, replaces dead ones
"""

from release.search.distributed.pool import RayPool, ray_workers

__all__ = ["RayPool", "ray_workers"]
