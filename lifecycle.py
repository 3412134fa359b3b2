"""A tracked run's life: the tracker's run opened, the engine trained through it, the run closed
whatever happened, and the exit code; with what a run and a search share (config, data, device).

Exit codes: 0 done (or nothing to continue), 1 the run failed (the loss diverged, a record or a
checkpoint could not be written), 2 a user's mistake (one line says which), 128+N stopped by signal N.
"""

import contextlib
import os
import secrets
import sys
import time

import torch

import alexnet
import data
import durable
import ranks
import resume
from trackers import base
from trackers.base import RecordError, UsageError
from trackers.queued import Queued


def make_config(args):
    """Every flag's value under its name, with the recipe filling what was not given."""
    cfg = dict(alexnet.RECIPES[args.recipe])
    for key, value in vars(args).items():
        if value is not None or key not in cfg:
            cfg[key] = value
    return cfg


def load_data(args, cfg):
    return data.load(
        args.dataset,
        args.data_dir,
        skip_checksum=args.skip_checksum,
        train_size=args.train_size,
        val_fraction=cfg["val_fraction"],
        seed=cfg["seed"],
    )


def fit_recipe(cfg, args, dataset):
    """What the default recipe changes for this training set (alexnet.fit_to_data), given the flags."""
    return alexnet.fit_to_data(cfg, len(dataset.train), {k for k, v in vars(args).items() if v is not None})


def resolve_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def prepare_out_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"--out-dir {path} is not writable: {e.strerror}") from None
    return os.path.abspath(path)


def relocate(tracker_class, args):
    """--moved-from: re-point the tracker's local records in --out-dir; the exit code."""
    if not os.path.isdir(args.out_dir):
        return ranks.rank0_error(f"--moved-from: --out-dir {args.out_dir} is not a folder", 2)
    old, new = (os.path.abspath(p).rstrip(os.sep) for p in (args.moved_from, args.out_dir))
    try:
        ranks.rank0_print(tracker_class.relocate(old, new))
    except RecordError as e:
        return ranks.rank0_error(e, 1)
    return 0


def read_state(path):
    """The resume state at `path`, or the one saved before it where that cannot be read (saying so)."""
    try:
        return alexnet.load_state(path)
    except alexnet.CheckpointError as e:
        state = resume.fall_back(path, e)
        ranks.rank0_print(
            f"{e}; continuing from the state saved before it (the unreadable one is kept as {path}.unreadable)"
        )
        return state


def run(tracker_class, args, given):
    """Open the tracker's run (or reopen it, for --resume), train, close the run; the exit code."""
    lock = None
    try:
        device = ranks.start_distributed(resolve_device(args.device))
        if args.resume not in (None, "latest", "auto"):  # a run folder anywhere: its parent holds the tracker's data
            args.out_dir = os.path.dirname(os.path.dirname(resume.find_state(None, args.resume)))
        args.out_dir = prepare_out_dir(args.out_dir) if ranks.RANK == 0 else os.path.abspath(args.out_dir)
        # Rank 0 decides which run goes on (or that a new one starts), and every process follows.
        state_path = ranks.rank0_decides(lambda: resume.find_state(args.out_dir, args.resume) if args.resume else None)
        run_dir = (
            os.path.dirname(state_path)
            if state_path
            else os.path.join(args.out_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}")
        )
        tracker, saved = None, None
        if ranks.RANK == 0:  # credentials are asked for and checked before the data is loaded
            try:
                lock = durable.FolderLock(run_dir, "the run folder")  # one process trains a run; held to the end
                last_exit(args.out_dir, "running")
                saved = read_state(state_path) if state_path else None
                if saved:
                    for line in resume.restore_flags(args, saved, given):
                        print(line)
                tracker = (
                    Queued(tracker_class(args, run_dir)) if args.mode != "disabled" else base.Disabled(args, run_dir)
                )
                if tracker.settings:
                    print(f"{tracker.name}: your settings kept: {', '.join(tracker.settings)}")
            finally:  # the other processes wait through the token prompt for rank 0's run id, or None
                ranks.from_rank0(tracker.run_id if tracker else None)
            run_id = saved["config"]["run_id"] if saved else tracker.run_id
        else:
            run_id = ranks.from_rank0(None)
            if run_id is None:
                return 2  # rank 0 could not open its tracker and has said why
            tracker = base.Disabled(args, os.path.join(args.out_dir, run_id))
            saved = alexnet.load_state(state_path) if state_path else None
            if saved:
                resume.restore_flags(args, saved, given)
        cfg = make_config(args)
        dataset = load_data(args, cfg)
        fitted = fit_recipe(cfg, args, dataset)
        if saved:  # a resumed run goes on with what it started with (a run from before the fitting too)
            fitted = {k: saved["config"].get(k, v) for k, v in fitted.items()}
        if fitted:
            cfg.update(fitted)
            ranks.rank0_print(
                f"the default recipe fitted to {len(dataset.train):,} training images and {cfg['epochs']} epochs: "
                + ", ".join(f"{k} {v:g}" for k, v in fitted.items())
                + " (a --batch-size or --lr given keeps the recipe as it is)"
            )
        cfg.update(
            run_id=run_id,
            dataset_version=dataset.version,
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            **alexnet.environment(device),
        )
        if saved:
            resume.check_resumable(cfg, saved)
        engine = alexnet.Engine(cfg, dataset, tracker, device, tracker.run_dir)
        if saved:
            engine.restore(saved)
    except (UsageError, durable.Busy, data.DataError, alexnet.CheckpointError) as e:
        code = ranks.rank0_error(e, 2)
    except resume.Finished as e:
        ranks.rank0_print(
            f"run {os.path.basename(str(e))} is finished: nothing to continue (its results: {e}/history.json)"
        )
        code = 0
    except KeyboardInterrupt:
        code = ranks.rank0_error("interrupted before training started; nothing was recorded", 130)
    else:
        ended = (lambda code: last_exit(args.out_dir, code)) if lock else (lambda code: None)
        code = train(engine, tracker, saved is not None, ended)
        engine = None  # its DDP wrapper holds the process group
    if lock:
        last_exit(args.out_dir, code)
        lock.release()
    ranks.leave_process_group()
    return code


LAST_EXIT = ".last-exit"  # in --out-dir: how the last run there ended, for a scheduler's requeue (docs/clusters.md)
CONTINUE = {"running", 75, 130, 143}  # a resume state is there to continue from; any other: done, or look


def last_exit(out_dir, status):
    """The run's exit status, or "running" while it trains (left so by a kill -9 or a lost machine),
    written by the process that trains it, where a job script reads it: torchrun's own status cannot
    tell a preempted run from a failed one (it exits 1 either way). Where it cannot be written (a full
    disk), it is removed: a job script then stops for a person to look."""
    path = os.path.join(out_dir, LAST_EXIT)

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(f"{status}\n")

    try:
        durable.write_atomically(path, write)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(path)


def train(engine, tracker, resumed, ended=lambda code: None):
    """Open the tracker's run, train, close the run whatever happened; returns the exit code (`ended`
    is told it first, where the process ends here)."""
    status, code, failure, abandoned, lost, started = "failed", 1, None, None, False, False
    with engine.stop.deferred():  # a signal now waits for the step, the checkpoint and the tracker's flush
        try:
            try:
                with engine.stop.impatient():
                    tracker.start(engine.cfg, engine.model)
                started = True
            finally:  # every process learns whether rank 0's run opened, so all end together if not
                started = ranks.from_rank0(started)
            if not started:  # another process: rank 0 could not open its run and says why
                raise UsageError("rank 0 could not open its tracker run")
            if resumed:
                recorded = tracker.recorded()
                done = len(engine.history)
                at = f"epoch {done + 1}" if done < engine.cfg["epochs"] else "the test evaluation"
                ranks.rank0_print(
                    f"resuming run {tracker.run_id} from step {engine.step} ({at}); "
                    f"its record holds steps to {recorded.last_step}, epochs {sorted(recorded.epochs) or 'none'}"
                    + (", the results" if recorded.results else "")
                )
            else:
                recorded = None
            engine.run(recorded)
            status, code = "completed", 0
            if engine.stop.signum:  # a stop asked for during the last phase: the record is whole, the run not closed
                engine.save_state()
                raise alexnet.Interrupted(engine.stop.signum, engine.state_path)
        except UsageError as e:  # raised while the tracker opens its run (token, server)
            code, failure = 2, e
        except RecordError as e:
            failure = e
        except alexnet.StoppedEarly:  # complete as it stands; a stop asked for meanwhile still ends the process
            status, code = "completed", 128 + engine.stop.signum if engine.stop.signum else 0
        except alexnet.Interrupted as e:
            status, code = "interrupted", 128 + e.signum
        except alexnet.Abandoned as e:
            status, code, abandoned = "interrupted", 130, f"{e}: stopped waiting for {tracker.name} to open the run"
        except (FloatingPointError, alexnet.CheckpointError) as e:
            failure = f"{e}; checkpoints already saved are kept in {tracker.run_dir}"
        except RuntimeError as e:
            if not ranks.lost_peer(e):
                raise
            # Another process of the launch died: torchrun stops the others and starts them all again
            # with this command line; the last resume state is where they go on (--resume auto).
            status, code, lost = "interrupted", 75, True  # EX_TEMPFAIL: continue me
        except tracker.write_errors as e:  # the tracker could not write its record: a full disk, a folder gone
            failure = _write_failure(e, engine, tracker)
        finally:
            if not abandoned:
                try:
                    with engine.stop.impatient():
                        tracker.finish(status, code)
                except alexnet.Abandoned as e:
                    code = code or 130
                    abandoned = f"{e}: stopped waiting for {tracker.name} to close the run"
                except tracker.write_errors as e:
                    code, failure = code or 1, failure or _write_failure(e, engine, tracker)
    if status == "completed" and code == 0:
        engine.forget_state()
    if started and tracker.where():  # where the run's record is, once it has opened
        ranks.rank0_print(tracker.where())
    if status == "interrupted" and not lost and os.path.exists(engine.state_path):
        ranks.rank0_print(
            f"interrupted at step {engine.step}; saved {engine.state_path}\n"
            f"  continue with: {_continue_command(tracker)}",
            file=sys.stderr,
        )
    if lost:  # every process that is left says it, last: rank 0 may be the one that died
        print(f"rank {ranks.RANK}: lost a peer; torchrun will restart from the resume state", file=sys.stderr)
    if failure:
        ranks.rank0_error(failure, code)  # last, below the tracker's own closing lines
    if abandoned:  # the client would wait again at exit; what it wrote so far stays on disk
        ranks.rank0_print(f"{abandoned}; what it recorded so far is kept locally (above)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        ended(code)
        os._exit(code)
    return ranks.end_together(code)


def _continue_command(tracker):
    """The command that continues this run (a search's trial: the search)."""
    return resume.continue_command(None if getattr(tracker.args, "search", None) else tracker.run_dir)


def _write_failure(e, engine, tracker):
    """One line for a record the tracker could not write, from the innermost error."""
    while e.__cause__:
        e = e.__cause__
    what = (
        f"{e.strerror} ({e.filename})"
        if isinstance(e, OSError) and e.filename
        else (str(e).splitlines() or [type(e).__name__])[0]
    )
    line = (
        f"{tracker.name} could not write its record: {what}; what is already recorded and saved is kept in "
        f"{tracker.run_dir}"
    )
    if os.path.exists(engine.state_path):
        line += f"; once that is fixed, continue with: {_continue_command(tracker)}"
    return line
