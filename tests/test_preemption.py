"""The signal handling shared by the Lightning callback and the mmengine hook (the runs themselves:
tests/classification/test_train.py, tests/segmentation/test_seg_task.py)."""
import multiprocessing
import os
import signal
import time

import pytest

from ravlt.preemption import SignalCatcher, requeue_slurm_job, requeued_slurm_job, slurm_job_id


def test_a_caught_signal_is_recorded_and_the_previous_handler_comes_back():
    before = signal.getsignal(signal.SIGUSR1)
    catcher = SignalCatcher()
    catcher.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)  # Python runs the handler between bytecodes
        assert catcher.received == signal.SIGUSR1 and catcher.agreed() == signal.SIGUSR1  # no process group: as is
    finally:
        catcher.restore()
    assert signal.getsignal(signal.SIGUSR1) == before


def _sleep(started):
    started.set()
    time.sleep(30)


def test_forked_dataloader_style_children_survive_the_preemption_signals():
    SignalCatcher()  # a run that handles preemption
    fork = multiprocessing.get_context("fork")
    started = fork.Event()
    child = fork.Process(target=_sleep, args=(started,))
    child.start()
    try:
        assert started.wait(30)
        for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
            os.kill(child.pid, signum)
        time.sleep(0.5)
        assert child.is_alive()
    finally:
        child.kill()
        child.join()


@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    (tmp_path / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (tmp_path / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)
    return calls


def test_only_a_time_limit_warning_inside_a_slurm_job_requeues(scontrol, monkeypatch):
    assert not requeue_slurm_job(signal.SIGUSR1) and not scontrol.exists()  # not a SLURM job
    monkeypatch.setenv("SLURM_JOB_ID", "31")
    assert not requeue_slurm_job(signal.SIGTERM) and not scontrol.exists()  # scancel must stay final
    assert requeue_slurm_job(signal.SIGUSR2) and scontrol.read_text() == "requeue 31\n"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "30")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert slurm_job_id() == "30_4"
    assert not requeued_slurm_job()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_slurm_job()
