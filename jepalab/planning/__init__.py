"""Planning in a world model's latent space: CEM, MPPI, gradient (Adam) and the MPC loop.

    planner = CEM(world_model, horizon=5, samples=300, iterations=30, elites=30)
    actions = planner.plan(z_hist, goal)          # (E, k, D), (E, D) -> (E, H, A)
    result = run_episode(env, MPCController(planner, encode_fn), goal_obs, budget=50)
    CEM(world_model, chunks=5, noise_beta=2.0)    # coloured (iCEM) noise over frameskip blocks
    diagnose_planning(world_model, "tworoom", "data/tworoom")  # replay / oracle rank / search gap
"""

from jepalab.planning.base import LatentModel, Planner, PlanResult, colored_noise
from jepalab.planning.cem import CEM
from jepalab.planning.cost import COST_KINDS, latent_cost
from jepalab.planning.diagnose import diagnose_planning
from jepalab.planning.gradient import GradientPlanner
from jepalab.planning.mpc import MPCController, run_episode
from jepalab.planning.mppi import MPPI

__all__ = [
    "CEM", "COST_KINDS", "GradientPlanner", "LatentModel", "MPCController", "MPPI",
    "PlanResult", "Planner", "colored_noise", "diagnose_planning", "latent_cost", "run_episode",
]
