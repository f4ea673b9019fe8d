"""Trials killed on another host: each running trial records Optuna's heartbeat, and any worker that opens the
study fails a trial whose heartbeat went silent for longer than the grace period, whatever host ran it; the trial
rows say why, and say which layers a quantized candidate kept in float."""

from __future__ import annotations

import time

import sqlalchemy
from optuna.trial import TrialState

from dlopt.optimize.config import OptimizeConfig
from dlopt.optimize.report_rows import trial_rows
from dlopt.optimize.space import Candidate
from dlopt.optimize.study import GRACE_S, ask, beating, fail_dead, open_storage, open_study

ELSEWHERE = {"host": "another-machine.example", "pid": 4242, "proc_start": 1}


def _study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    return storage, open_study(storage, OptimizeConfig(threads=(1,)))


def _set_heartbeat(storage, trial_id: int, seconds_ago: float) -> None:
    with storage.engine.begin() as db:
        db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime('now', :ago) "
                                   "WHERE trial_id = :id"), {"ago": f"-{int(seconds_ago)} seconds", "id": trial_id})


def _heartbeat(storage, trial_id: int) -> str | None:
    with storage.engine.connect() as db:
        return db.execute(sqlalchemy.text("SELECT heartbeat FROM trial_heartbeats WHERE trial_id = :id"),
                          {"id": trial_id}).scalar()


def test_a_trial_silent_on_another_host_is_failed_on_open_and_a_live_one_is_not(tmp_path):
    storage, study = _study(tmp_path)
    silent, live, old = ask(study), ask(study), ask(study)
    for t in (silent, live, old):
        t.set_user_attr("worker", ELSEWHERE)  # not this host: the pid check cannot tell
    storage.record_heartbeat(silent._trial_id)
    storage.record_heartbeat(live._trial_id)
    _set_heartbeat(storage, silent._trial_id, GRACE_S + 60)
    _set_heartbeat(storage, live._trial_id, 5)
    assert fail_dead(study, storage) == [silent.number]
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    # `old` never beat (a study made before heartbeats): it cannot be told, so it stays running
    assert states == {silent.number: TrialState.FAIL, live.number: TrialState.RUNNING,
                      old.number: TrialState.RUNNING}
    row = next(r for r in trial_rows(study) if r["number"] == silent.number)
    assert "another-machine.example sent no heartbeat" in row["failed_because"]
    assert fail_dead(study) == []  # nothing left to fail; the storage defaults to the study's own


def test_a_running_trial_beats_from_its_own_thread(tmp_path):
    storage, study = _study(tmp_path)
    storage.heartbeat_interval = 1  # seconds; the study's default is HEARTBEAT_S
    trial = ask(study)
    with beating(study, trial):
        time.sleep(0.3)
        first = _heartbeat(storage, trial._trial_id)
        time.sleep(2.2)  # the main thread busy elsewhere: the heartbeat goes on (SQLite keeps whole seconds)
        later = _heartbeat(storage, trial._trial_id)
    assert first is not None and later > first
    time.sleep(1.5)
    assert _heartbeat(storage, trial._trial_id) == later  # stopped with the block


def test_labels_say_which_layers_stayed_in_float():
    from dlopt.optimize.config import Precision, Runtime

    c = Candidate(0.3, Precision.INT8, Runtime.ONNXRUNTIME, 1)
    assert c.label == "prune 0.3 · int8 · onnxruntime · 1t" == c.labelled(0)
    assert c.labelled(3) == "prune 0.3 · int8 (3 layers float) · onnxruntime · 1t"
    assert c.labelled(1) == "prune 0.3 · int8 (1 layer float) · onnxruntime · 1t"
    both = Candidate(0.0, Precision.INT8_BF16, Runtime.OPENVINO, 1)
    assert both.labelled(2) == "unpruned · int8+bf16 (2 layers bf16) · openvino · 1t"


def test_a_trial_row_carries_the_kept_layers(tmp_path):
    from dlopt.optimize.config import Precision, Runtime
    from dlopt.optimize.judge import Verdict
    from dlopt.optimize.search import Result
    from dlopt.optimize.timing import Timing

    cand = Candidate(0.0, Precision.INT8, Runtime.OPENVINO, 1)
    t = Timing(1.0, 1.0, 10)
    result = Result(cand, "x/model.xml", "k", 10, Verdict(None, 0.5, 0.99, None, "test"),
                    {"verified": True, "kept_float": 3}, {"candidate": t, "fp32 eager": t, "fp32 openvino": t})
    _, study = _study(tmp_path)
    trial = ask(study)
    trial.set_user_attr("result", result.to_json())
    study.tell(trial, [1.0, 0.5])
    (row,) = trial_rows(study)
    assert row["label"] == "unpruned · int8 (3 layers float) · openvino · 1t" and row["kept_float"] == 3
