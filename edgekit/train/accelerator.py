"""The accelerator training runs on, resolved from `TrainingSettings` once, before any data is read.

Mixed precision follows what each chip does natively: on CUDA, BF16 autocast where the GPU has BF16
(Ampere and newer; no gradient scaler needed) and FP16 with a gradient scaler before it; on a CPU, BF16
autocast only where the CPU computes in BF16 natively (AVX-512 BF16, AMX) — elsewhere it is emulated and
slower than FP32. `benchmarks/results/train_throughput.md` measured BF16 on an AVX-512 BF16 CPU (faster, with
no significant accuracy loss, paired) and channels_last (faster on the CPU too): both are the defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch

from edgekit.core.cpu import cpu_has_native_bf16, cpu_model
from edgekit.core.errors import EdgekitError
from edgekit.train.settings import TrainingSettings

# benchmarks/results/train_throughput.md: BF16 autocast against FP32 on an AVX-512 BF16 CPU.
CPU_BF16_BY_DEFAULT = True


@dataclasses.dataclass(frozen=True)
class Accelerator:
    device: torch.device
    name: str  # in words, for the output and the recipe: "cuda:0 (NVIDIA H200)", "cpu (AMD EPYC, 2 threads)"
    amp_dtype: torch.dtype | None  # autocast's dtype; None: FP32 throughout
    channels_last: bool

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler where FP16's narrow range needs one; otherwise a disabled one (a pass-through)."""
        return torch.amp.GradScaler("cuda", enabled=self.cuda and self.amp_dtype == torch.float16)

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` on this accelerator, in its memory format (in place: an optimizer's references hold)."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A batch from the loader on this accelerator (asynchronously from pinned memory on CUDA)."""
        if self.channels_last:
            return images.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return images.to(self.device, non_blocking=True)

    @property
    def amp(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def to_dict(self) -> dict[str, Any]:
        return {"device": str(self.device), "name": self.name, "amp": self.amp, "channels_last": self.channels_last}

    def describe(self) -> str:
        amp = "FP32" if self.amp_dtype is None else f"{self.amp.upper()} autocast"
        if self.amp_dtype == torch.bfloat16 and not self.cuda and not cpu_has_native_bf16():
            amp += " (emulated on this CPU: slower than FP32)"
        return f"{self.name}, {amp}" + (", channels_last" if self.channels_last else "")


def _cuda_device(choice: str, local_rank: int | None) -> torch.device:
    if not torch.cuda.is_available():
        raise EdgekitError(
            f"--accelerator {choice}: PyTorch sees no CUDA GPU here (a CPU-only torch build, no driver, or "
            "CUDA_VISIBLE_DEVICES hides them); use --accelerator cpu, or check `nvidia-smi`"
        )
    count = torch.cuda.device_count()
    if local_rank is not None:  # under torchrun each process takes the GPU of its LOCAL_RANK
        if choice.startswith("cuda:"):
            raise EdgekitError(
                f"--accelerator {choice} under torchrun: each process takes the GPU of its LOCAL_RANK; pass "
                "--accelerator cuda and choose the GPUs with CUDA_VISIBLE_DEVICES"
            )
        if local_rank >= count:
            raise EdgekitError(
                f"torchrun started local rank {local_rank}, but this machine has {count} CUDA GPU(s): give "
                f"--nproc_per_node {count} or fewer"
            )
        return torch.device("cuda", local_rank)
    index = int(choice.partition(":")[2] or 0)
    if index >= count:
        raise EdgekitError(f"--accelerator {choice}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)


def require_cuda_for_sync_batchnorm(settings: TrainingSettings, accelerator: Accelerator) -> None:
    if settings.sync_batchnorm and not accelerator.cuda:
        raise EdgekitError(
            f"--sync-batchnorm synchronises BatchNorm across GPUs, and this run trains on {accelerator.device}; "
            "PyTorch has it for CUDA only: drop the flag"
        )


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if device.type == "cuda":
        # Native BF16 from Ampere (compute capability 8) on; `is_bf16_supported()` also counts emulation.
        bf16 = torch.cuda.get_device_capability(device)[0] >= 8
        if amp == "bf16" and not bf16:
            raise EdgekitError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no BF16; use --amp fp16")
        return torch.float16 if amp == "fp16" or not bf16 else torch.bfloat16
    if amp == "fp16":
        raise EdgekitError("--amp fp16 trains with a gradient scaler on CUDA GPUs; on a CPU use --amp bf16 or off")
    if amp == "bf16":
        return torch.bfloat16  # asked for: allowed without native BF16 too (`describe` says it will be slow)
    return torch.bfloat16 if CPU_BF16_BY_DEFAULT and cpu_has_native_bf16() else None


def resolve(settings: TrainingSettings, local_rank: int | None = None, threads: int = 1) -> Accelerator:
    """The accelerator for `settings`; `local_rank` is torchrun's for this process (None: not under torchrun)."""
    settings.validate()
    choice = settings.accelerator
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cpu":
        device = torch.device("cpu")
        name = f"cpu ({cpu_model()}, {threads} thread{'s' if threads != 1 else ''})"
    else:
        device = _cuda_device(choice, local_rank)
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    # NHWC: tensor cores want it, and oneDNN's CPU convolutions train faster in it (train_throughput.md).
    channels_last = settings.channels_last if settings.channels_last is not None else True
    return Accelerator(device, name, _amp_dtype(settings.amp, device), channels_last)
