"""Joining Ray for a job (`--ray-address` or a local loopback Ray), and the pyarrow filesystem Ray
Train checkpoints to."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pyarrow.fs as pafs
import ray
import ray.data

from hydralm.data.fs import filesystem_for, is_remote
from hydralm.settings import env_str
from training.llm import local_ray

__all__ = ["FORWARDED_ENV", "quiet_ray_data", "ray_session", "storage_target", "worker_env"]

# What a job's Ray workers need to reach s3:// paths: forwarded from the driver when set there.
FORWARDED_ENV = ("HYDRALM_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_DEFAULT_REGION")

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(address: str | None = None, *, log_to_driver: bool = True) -> Iterator[None]:
    """Use the Ray already initialised in this process, join the cluster at `address` ("auto":
    the one this machine belongs to), or start a local loopback-only Ray (`local_ray`), which is
    shut down on exit. `log_to_driver=False` keeps workers' output (vLLM is chatty) off the
    terminal."""
    if ray.is_initialized():
        yield
        return
    if not address:
        with local_ray(log_to_driver=log_to_driver):
            yield
        return
    ray.init(address=address, log_to_driver=log_to_driver, runtime_env=_address_env(address))
    log.info("joined Ray at %s", address)
    try:
        yield
    finally:
        ray.shutdown()


def _address_env(address: str) -> dict | None:
    """A job runtime_env naming the cluster at `address` (a GCS host:port) to the job's workers.

    Ray's own actors of a job look their cluster up by RAY_ADDRESS, else by the Ray instances
    running on their machine: where a machine runs two (a test session's and a demo's, say), Ray
    Train's placement-group cleaner cannot tell which is its own and its monitor dies with
    "Found multiple active Ray instances". Ray merges a job's env_vars into every task's and
    actor's, so naming the address once here reaches them all. "auto" and ray:// addresses are
    left alone (the former is resolved on the machine, the latter is Ray Client's)."""
    if address == "auto" or "://" in address:
        return None
    return {"env_vars": {"RAY_ADDRESS": address}}


def storage_target(uri: str) -> tuple[str, pafs.FileSystem | None]:
    """(storage_path, storage_filesystem) for Ray Train's RunConfig.

    A local path is used as is. An s3:// URI becomes a bucket/prefix path on the pyarrow
    S3FileSystem of `hydralm.s3.arrow_filesystem`. When the driver has AWS_* credentials,
    they are put into the filesystem itself: it is pickled to Ray Train's controller and
    workers, processes that may have been started without them.
    """
    if not is_remote(uri):
        return uri, None
    credentials = ((env_str("AWS_ACCESS_KEY_ID"), env_str("AWS_SECRET_ACCESS_KEY"))
                   if env_str("AWS_ACCESS_KEY_ID") else None)
    fs, path = filesystem_for(uri, credentials=credentials)
    return path, fs


@contextlib.contextmanager
def quiet_ray_data() -> Iterator[None]:
    """Turn Ray Data's own progress output off while the caller shows a tqdm bar of its own
    (without a terminal, Ray Data logs its progress every few seconds)."""
    context = ray.data.DataContext.get_current()
    previous = context.enable_progress_bars
    context.enable_progress_bars = False
    try:
        yield
    finally:
        context.enable_progress_bars = previous


def worker_env() -> dict[str, dict[str, str]]:
    """A runtime_env carrying the driver's S3 settings to the job's workers (which may have been
    started before they were set, or run on other machines)."""
    env = {name: env_str(name) for name in FORWARDED_ENV if env_str(name)}
    return {"env_vars": env} if env else {}
