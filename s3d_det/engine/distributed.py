"""Multi-process training: starting the processes, and the collectives they share.

One process per GPU (backend ``nccl``), or per CPU worker (``gloo``). ``launch`` spawns the processes of
this machine itself, or, when the job was started by ``torchrun`` (``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in the environment), joins the job from the environment in this process. Outside a job the
helpers answer as for one process (rank 0 of 1), so single-process code needs no special case.
"""
from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["launch", "get_rank", "get_world_size", "get_local_rank", "is_main_process", "synchronize",
           "all_gather", "all_reduce_mean"]

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_local_rank = 0


def launch(main_func: Callable[..., Any], num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: str = "auto", args: Sequence[Any] = (), *, backend: Optional[str] = None,
           timeout: timedelta = timedelta(minutes=30)) -> None:
    """Runs ``main_func(*args)`` in each of the ``num_machines * num_gpus_per_machine`` processes of a job.

    Args:
        main_func: a module-level function (it is pickled into spawned processes).
        num_gpus_per_machine: processes on this machine; with gloo on CPU, the number of CPU workers.
        num_machines, machine_rank: the machines of the job and this one's index (0-based).
        dist_url: ``"tcp://<address of machine 0>:<port>"``, or ``"auto"`` (one machine only: a free port
            of 127.0.0.1).
        backend: ``"nccl"`` or ``"gloo"``; None: nccl when CUDA is available, else gloo. With nccl, process
            ``local_rank`` uses ``cuda:<local_rank>``.
        timeout: of the collectives.

    Under torchrun the other arguments are ignored: the job is as torchrun describes it. A job of one
    process outside torchrun runs ``main_func`` here, without a process group.
    """
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")
    if all(name in os.environ for name in TORCHRUN_VARIABLES):
        _run(main_func, args, backend=backend, init_method="env://", rank=int(os.environ["RANK"]),
             world_size=int(os.environ["WORLD_SIZE"]), local_rank=int(os.environ["LOCAL_RANK"]), timeout=timeout)
        return
    if num_gpus_per_machine < 1 or num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ValueError(f"need num_gpus_per_machine >= 1, num_machines >= 1 and 0 <= machine_rank < num_machines, "
                         f"got {num_gpus_per_machine}, {num_machines} and {machine_rank}")
    if backend == "nccl" and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(f"num_gpus_per_machine={num_gpus_per_machine} but this machine has "
                         f"{torch.cuda.device_count()} CUDA devices")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url='auto' works on one machine only; give tcp://<address of machine 0>:<port>")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.start_processes(_spawned, nprocs=num_gpus_per_machine, start_method="spawn",
                       args=(main_func, args, backend, dist_url, world_size, num_gpus_per_machine * machine_rank,
                             timeout))


def _spawned(local_rank: int, main_func: Callable[..., Any], args: Sequence[Any], backend: str, init_method: str,
             world_size: int, first_rank: int, timeout: timedelta) -> None:
    _run(main_func, args, backend=backend, init_method=init_method, rank=first_rank + local_rank,
         world_size=world_size, local_rank=local_rank, timeout=timeout)


def _run(main_func: Callable[..., Any], args: Sequence[Any], *, backend: str, init_method: str, rank: int,
         world_size: int, local_rank: int, timeout: timedelta) -> None:
    global _local_rank
    _local_rank = local_rank
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size, timeout=timeout)
    try:
        synchronize()
        main_func(*args)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_job() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Processes in the job (1 outside a job)."""
    return dist.get_world_size() if _in_job() else 1


def get_rank() -> int:
    """This process's index in the job, 0-based (0 outside a job)."""
    return dist.get_rank() if _in_job() else 0


def get_local_rank() -> int:
    """This process's index on its machine (its GPU with nccl)."""
    return _local_rank if _in_job() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Waits for every process of the job (no-op outside a job)."""
    if get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[get_local_rank()])
        else:
            dist.barrier()


def all_gather(obj: Any) -> List[Any]:
    """Every process's ``obj`` (any picklable object), in rank order, on every process."""
    world_size = get_world_size()
    if world_size == 1:
        return [obj]
    out: List[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the processes; ``tensor`` itself is left unchanged."""
    if get_world_size() == 1:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out / get_world_size()
