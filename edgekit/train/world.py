"""The processes training runs in: one, or those torchrun started (RANK, LOCAL_RANK, WORLD_SIZE, and its
rendezvous variables). NCCL joins them on GPUs, gloo on CPUs; the same command runs on several machines
with torchrun's --nnodes/--node_rank/--rdzv_endpoint flags (README "Training on several GPUs")."""

from __future__ import annotations

import dataclasses
import os

import torch

from edgekit.core.errors import EdgekitError


@dataclasses.dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int | None = None  # torchrun's LOCAL_RANK: which GPU of this machine; None outside torchrun
    size: int = 1
    local_size: int = 1  # processes on this machine (torchrun's LOCAL_WORLD_SIZE): they share its cores

    @property
    def distributed(self) -> bool:
        """Started by torchrun (even as one process: `--nproc_per_node 1` still runs DDP over NCCL/gloo)."""
        return self.local_rank is not None

    @property
    def main(self) -> bool:
        """Whether this process reports and writes files (rank 0)."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over every process, in place (a no-op for one process)."""
        if self.distributed:
            torch.distributed.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def leave(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


ONE_PROCESS = World()


def from_environment() -> World:
    """This process's place among the processes torchrun started (one process when not under torchrun)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = os.environ.get("LOCAL_RANK")
        local_rank = int(local) if local is not None else None
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
        if local_rank is None and size > 1:
            raise ValueError("WORLD_SIZE > 1 without LOCAL_RANK")
    except ValueError as exc:
        raise EdgekitError(f"torchrun's environment is malformed ({exc}); start edgekit with torchrun") from None
    if size < 1 or not 0 <= rank < size:
        raise EdgekitError(f"RANK {rank} / WORLD_SIZE {size}: not a torchrun environment; unset them or use torchrun")
    return World(rank, local_rank, size, max(1, local_size))


def join(world: World, device: torch.device) -> None:
    """Join the process group: NCCL where each process has its GPU, gloo on CPUs."""
    if not world.distributed or torch.distributed.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts, so its communicator uses this process's GPU
        torch.distributed.init_process_group("nccl", device_id=device)
    else:
        torch.distributed.init_process_group("gloo")
