"""hydralm: HYDRA personalization of black-box LLMs (shared base + per-user heads).

The library: data, retrieval, tasks and metrics, generator clients, models, artifacts and config.
It never imports ray; the Ray jobs live in `training/` and the Ray Serve app in `serving/`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
