"""The Optuna study: storage, sampler, constraints, and what a killed trial leaves behind.

Two objectives, both minimised: latency (ms, at the goal's batch) and accuracy drop (points); the budget is a
constraint (drop <= --max-drop, and the latency, speed-up or size goal; `Trial.set_constraint`), which Optuna's
multi-objective TPE sampler uses to prefer feasible regions. The study lives in an RDB storage: by default SQLite inside the run, or
any `--storage URL` several workers share. Each trial records the process that runs it (pid, host, start time)
and the machine's fingerprint; a trial whose process is gone (SIGKILL, a crash) is marked failed when a worker
on that host next opens the study, and never counts as finished. Each running trial also records Optuna's heartbeat
every HEARTBEAT_S (a thread of its own: ask/tell gets none from Optuna); one silent for GRACE_S is failed by any
worker on any host (a machine that died, a worker killed elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlopt.core.errors import UsageError
from dlopt.optimize.cache import FOLDER
from dlopt.optimize.config import BEFORE_DEPTH, OptimizeConfig, Precision

DB = "study.db"
RACES = ("already exists", "database is locked", "UNIQUE constraint", "duplicate key")  # schema made twice at once
SEARCH_KEYS = ("goal", "runtimes", "threads", "prune_ratios", "depth_shares", "precisions", "finetune_epochs",
               "data_limit", "seed", "inputs")  # what a study's trials depend on: a worker or a resume must agree on these
HEARTBEAT_S = 20  # a running trial's heartbeat interval (Optuna's RDB storage takes whole seconds)
# silent this long: its worker is gone. Generous: a build in C code holding the GIL, or a database busy with other
# workers, must not pass for a death (a trial failed while alive loses its result: the trial is run again)
GRACE_S = 300
STALE = "failed_because:"  # + trial number: a study attribute saying why a silent trial was failed


def storage_url(run_path: Path, cfg: OptimizeConfig) -> str:
    return cfg.storage or f"sqlite:///{Path(run_path) / FOLDER / DB}"


def shown_url(url: str) -> str:
    """The URL without its password (for reports and messages)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def with_driver(url: str) -> str:
    """postgresql:// names no driver, and SQLAlchemy's default (psycopg 3) may be missing where psycopg2 is there."""
    from sqlalchemy.engine import make_url

    from dlopt.optimize.space import installed

    parsed = make_url(url)
    if parsed.drivername == "postgresql" and not installed("psycopg") and installed("psycopg2"):
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at `url`, connected now: a server that refuses is one line (exit 2)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = with_driver(url)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(6):
        try:
            with _quiet_experimental():  # heartbeat_interval is "experimental" since Optuna 2.9
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=GRACE_S, heartbeat_stale_trial_callback=_noted)
        except (SQLAlchemyError, ImportError, ValueError, OSError) as exc:
            first = " ".join(str(exc).split())[:240]
            if attempt < 5 and any(w in first for w in RACES):  # two workers made the tables at the same moment
                time.sleep(0.5 * (attempt + 1))
                continue
            raise UsageError(f"--storage {shown_url(url)}: cannot open it ({type(exc).__name__}: {first})") from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")  # ask/tell: we beat
        yield


def ask(study: Any) -> Any:
    """study.ask() without Optuna's warning that heartbeats belong to Study.optimize (`beating` records them)."""
    with _quiet_experimental():
        return study.ask()


@contextlib.contextmanager
def beating(study: Any, trial: Any) -> Iterator[None]:
    """The trial's heartbeat, recorded every interval by a daemon thread while the block runs (Optuna starts one
    only inside Study.optimize). The thread waits on an Event, so it wakes even while the main thread is in C code
    that releases the GIL (torch, ONNX Runtime, NNCF, a lock wait)."""
    from sqlalchemy.exc import SQLAlchemyError

    storage = study._storage  # Optuna keeps no public handle on a study's storage
    interval = _interval(storage)
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(SQLAlchemyError):  # a busy or lost database: the next beat tries again
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"dlopt-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _interval(storage: Any) -> int | None:
    """The storage's heartbeat interval; None where it keeps no heartbeats (Optuna's BaseHeartbeat API)."""
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if get is not None else None


def _noted(study: Any, trial: Any) -> None:
    """Optuna's callback for each silent trial this worker failed: why, kept as a study attribute (a finished
    trial takes no more attributes of its own)."""
    host = (trial.user_attrs.get("worker") or {}).get("host", "another host")
    study.set_user_attr(f"{STALE}{trial.number}", f"its worker on {host} sent no heartbeat for over {GRACE_S} s "
                        "(killed, or its machine lost); nothing it built was used")


def _search_part(cfg: OptimizeConfig) -> dict[str, Any]:
    """As the storage holds it (JSON: tuples read back as lists)."""
    data = cfg.to_json()
    return json.loads(json.dumps({k: data[k] for k in SEARCH_KEYS}))


def open_study(storage: Any, cfg: OptimizeConfig) -> Any:
    """Create the study, or load it (`load_if_exists`) after checking it searches the same space for the same goal.
    The sampler's seed moves on with the trials already stored, so a resumed or joining worker does not replay
    the first one's draws."""
    import optuna

    wanted = _search_part(cfg)
    names = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    old = names.get(cfg.study)
    stored = old.user_attrs.get("search") if old else None
    if stored is not None:  # a study made before depth pruning searched without it
        stored = {"depth_shares": list(BEFORE_DEPTH), **stored}
    if old is not None and stored is not None and stored != wanted:
        diff = sorted(k for k in wanted if stored.get(k) != wanted.get(k))
        raise UsageError(f"study {cfg.study!r} searches with other options ({', '.join(diff)} differ); continue it "
                         "with the same options (or --resume RUN), or give another --study")
    offset = old.n_trials if old is not None else 0
    # constraints: each trial's set_constraint values (drop, goal), which Optuna's samplers read themselves
    sampler = optuna.samplers.TPESampler(seed=cfg.seed + offset, multivariate=True, n_startup_trials=8)
    study = optuna.create_study(storage=storage, study_name=cfg.study, directions=["minimize", "minimize"],
                                sampler=sampler, load_if_exists=True)
    if stored is None:
        study.set_user_attr("search", wanted)
    return study


WARM_START_MIN_TRIALS = 10  # studies this long (or time-bound) start from the unpruned int8 files
SMALL_SPACE = 16  # a space this small that the study can afford is tried whole, in order (a sampler repeats itself)


def warm_start(study: Any, space: Any, cfg: OptimizeConfig, given: tuple[dict[str, Any], ...] = ()
               ) -> list[dict[str, Any]]:
    """A new study's first trials: `given` (an ONNX file: the file itself), then every candidate where the space is
    small and the study can afford it all, else each int8 file of the model as it is (cheap to build, often the
    biggest step), then the sampler explores; the int8 files are skipped where the study is too short to spare them,
    and everything where it already holds trials."""
    trials, _ = cfg.stop
    if study.trials:
        return []
    first = [{"blocks": 0, **params} for params in given]  # none removed unless the caller says
    if space.size <= SMALL_SPACE and (trials is None or trials >= space.size):  # affordable: try every candidate
        import itertools

        first += [{"prune": r, "blocks": b, "format": f, "threads": t}
                  for r, b, f, t in itertools.product(space.ratios, space.blocks, space.formats, space.threads)]
    elif 0.0 in space.ratios and (trials is None or trials >= WARM_START_MIN_TRIALS):
        first += [{"prune": 0.0, "blocks": 0, "format": f, "threads": max(space.threads)} for f in space.formats
                  if f.split("@")[0] in (Precision.INT8, Precision.INT8_BF16)][:3]
    for params in first:
        study.enqueue_trial(params, skip_if_exists=True)
    return first


def fail_dead(study: Any, storage: Any | None = None) -> list[int]:
    """Mark failed every running trial whose process on this host is gone, and every one (any host) whose heartbeat
    stopped over GRACE_S ago; their numbers."""
    from optuna.trial import TrialState

    from dlopt.core.staging import owner_alive

    storage = storage if storage is not None else study._storage
    gone, study_id = [], storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if owner_alive(t.user_attrs.get("worker") or {}) is False:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            with contextlib.suppress(RuntimeError):  # another worker marked it first
                storage.set_trial_user_attr(trial_id, "failed_because", "its process was killed before it finished; "
                                            "nothing it built was used")
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
                gone.append(t.number)
    return gone + fail_silent(study)


def fail_silent(study: Any) -> list[int]:
    """Optuna's `fail_stale_trials`: running trials whose heartbeat has been silent for GRACE_S, failed whatever host
    ran them (`_noted` keeps why); their numbers."""
    import optuna
    from optuna.trial import TrialState

    if _interval(study._storage) is None:
        return []
    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    with _quiet_experimental():
        optuna.storages.fail_stale_trials(study)
    said = study.user_attrs
    return [n for n in running if f"{STALE}{n}" in said]


def finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
