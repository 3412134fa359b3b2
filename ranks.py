"""torchrun's processes: joining the launch, rank 0 deciding for all, ending together.

Under torchrun every process runs the same script; only rank 0 talks to the user and the tracker,
and the others follow its decisions. Outside torchrun there is one process, rank 0.
"""

import gc
import os
import re
import secrets
import sys
import time

import torch

RANK = int(os.environ.get("RANK", 0))  # set by torchrun


def rank0_print(line, file=None):
    if RANK == 0:
        print(line, file=file or sys.stdout)


def rank0_error(message, code):
    """Says `error: message` (on rank 0) and returns the exit code `code`."""
    if RANK == 0:
        print(f"error: {message}", file=sys.stderr)
    return code


def start_distributed(device):
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA); the device of this process."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    store, rank, world_size = next(torch.distributed.rendezvous("env://"))
    torch.distributed.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        rank=rank,
        world_size=world_size,
        store=_this_attempt(store, rank, world_size),
    )
    return device


def _this_attempt(store, rank, world_size, timeout=600):
    """The launcher's store under a name that this start of the processes shares and no earlier one
    used. torchrun keeps one store for the whole job: after a restart it still held the dead
    workers' addresses, and a process that read one failed to connect. The restart count cannot be
    the name: on more than one node, a launch that restarts for another's failure does not count it.
    So rank 0 draws the name and each other rank asks for it under a name of its own: no answer it
    reads can be an earlier start's."""
    if rank == 0:
        name, waiting, deadline = secrets.token_hex(8), set(range(1, world_size)), time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ranks {sorted(waiting)} did not join within {timeout} s")
            for r in sorted(waiting):  # an earlier start's question is answered too, in vain
                store.set(f"answer/{store.get(f'ask/{r}').decode()}", name)
                if store.check([f"joined/{name}/{r}"]):
                    waiting.discard(r)
            time.sleep(0.05)
    else:
        question = secrets.token_hex(8)
        store.set(f"ask/{rank}", question)
        name = store.get(f"answer/{question}").decode()
        store.set(f"joined/{name}/{rank}", "")
    return torch.distributed.PrefixStore(f"attempt/{name}", store)


def from_rank0(value):
    """Rank 0's value, in every process (under torchrun); rank 0 sends None when it cannot go on."""
    if not torch.distributed.is_initialized():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def rank0_decides(choose):
    """What `choose()` returns on rank 0, in every process; what it raises on rank 0 is raised in
    every process."""
    if RANK == 0:
        try:
            value = choose()
        except Exception as e:
            from_rank0(e)
            raise
        return from_rank0(value)
    value = from_rank0(None)
    if isinstance(value, Exception):
        raise value
    return value


def lost_peer(e):
    """A collective failed because another process of the launch is gone (gloo: "Connection reset
    by peer"; NCCL and the store: torch.distributed.DistError)."""
    return torch.distributed.is_initialized() and (
        isinstance(e, torch.distributed.DistError)
        or re.search(r"Connection (reset|closed) by peer|Broken pipe|gloo/transport", str(e)) is not None
    )


def end_together(code):
    """Under torchrun, every process waits for rank 0 to close its tracker run and ends with its exit
    code (a process that tore its process group down while rank 0 still used it aborted)."""
    if not torch.distributed.is_initialized():
        return code
    try:
        return from_rank0(code)
    except RuntimeError:  # rank 0 is gone (it stopped waiting on a slow tracker, or was killed)
        return code


def leave_process_group():
    """Destroy the process group while Python still runs. Its worker threads free each collective
    they finish, which takes the interpreter's lock: one that did so while the interpreter was
    exiting ended the process with SIGABRT ("terminate called without an active exception"; about
    one launch in seven). Destroying the group joins those threads; DDP holds the group too, so
    the caller drops the engine first, and a collection frees what a reference cycle still holds."""
    if torch.distributed.is_initialized():
        try:
            torch.distributed.destroy_process_group()
        except RuntimeError:  # a peer is gone
            pass
    gc.collect()
