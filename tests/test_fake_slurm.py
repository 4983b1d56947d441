"""The fake SLURM of tests/fake_slurm: its commands on plain batch scripts, then submitit's real
SlurmExecutor through it (job array and its parallelism, a killed task, requeue on the preemption
signal and on the time limit's signal)."""
import os
import re
import time
from pathlib import Path

import pytest
import submitit
from submitit.core.utils import UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from tests import slurm_jobs
from tests.fake_slurm import BIN, FakeSlurm
from tests.fake_slurm import _fakeslurm as fake_core

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def with_pythonpath(monkeypatch):
    """Jobs inherit the environment (sbatch --export=ALL): the pickled functions live in tests/."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))


@pytest.fixture
def slurm(tmp_path, with_pythonpath):
    with FakeSlurm(tmp_path / "slurm-state", kill_wait_s=1) as s:
        yield s


def sbatch(slurm, script: str, *args: str) -> str:
    path = Path(f"job-{abs(hash(script))}.sh")
    path.write_text(script)
    out = slurm.run("sbatch", "--parsable", *args, str(path)).stdout.strip()
    assert out.isdigit(), out
    return out


# ---------------------------------------------------------------- the commands on their own

def test_every_command_is_an_executable_python_script():
    for name in ("sbatch", "srun", "sacct", "squeue", "scontrol", "scancel"):
        path = BIN / name
        assert os.access(path, os.X_OK) and path.read_text().startswith("#!/usr/bin/env python3\n"), name


@pytest.mark.slow
@pytest.mark.serial
def test_array_tasks_get_slurm_ids_outputs_and_at_most_the_parallelism(slurm):
    job = sbatch(slurm, "#!/bin/bash\n"
                 "#SBATCH --array=1-7:2%2\n"
                 "#SBATCH --job-name=demo --output=%x-%A_%a.out --ntasks=2\n"
                 "env | grep ^SLURM_ | sort\n"
                 "srun --output 'step-%A_%a-%t.out' bash -c 'echo rank=$SLURM_PROCID local=$SLURM_LOCALID'\n"
                 "sleep 0.3\n")
    tasks = slurm.wait([job], timeout_s=30)
    assert [t.job_id for t in tasks] == [f"{job}_{i}" for i in (1, 3, 5, 7)]
    assert all(t.state == "COMPLETED" and t.exit_code == "0:0" for t in tasks)
    assert slurm.max_concurrent(job) == 2
    raw_ids = set()
    for t in tasks:
        env = dict(line.split("=", 1) for line in Path(f"demo-{job}_{t.index}.out").read_text().splitlines())
        assert env["SLURM_ARRAY_JOB_ID"] == job and env["SLURM_ARRAY_TASK_ID"] == str(t.index)
        assert (env["SLURM_ARRAY_TASK_COUNT"], env["SLURM_ARRAY_TASK_MIN"], env["SLURM_ARRAY_TASK_MAX"],
                env["SLURM_ARRAY_TASK_STEP"]) == ("4", "1", "7", "2")
        assert env["SLURM_JOB_ID"] == t.raw_job_id and env["SLURM_JOB_NODELIST"] == "fakenode0"
        assert env["SLURM_NTASKS"] == "2" and env["SLURM_RESTART_COUNT"] == "0"
        raw_ids.add(env["SLURM_JOB_ID"])
        for rank in (0, 1):
            assert Path(f"step-{job}_{t.index}-{rank}.out").read_text() == f"rank={rank} local={rank}\n"
    assert len(raw_ids) == 4  # each task has its own SLURM_JOB_ID, as in real SLURM


@pytest.mark.slow
def test_sacct_lines_parse_with_submitits_own_reader(slurm):
    job = sbatch(slurm, "#!/bin/bash\nsleep 2\n", "--array=0-2%1")
    text = slurm.run("sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", job).stdout
    assert text.splitlines()[0] == "JobID|State|NodeList"
    assert re.search(rf"^{job}_\[[12]-2%1\]\|PENDING\|None assigned$|^{job}_\[0-2%1\]\|PENDING", text, re.M), text
    info = SlurmInfoWatcher().read_info(text)
    assert info[f"{job}_2"]["State"] == "PENDING"
    slurm.wait_state(f"{job}_0", "RUNNING")
    text = slurm.run("sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", job).stdout
    assert f"{job}_0|RUNNING|fakenode0" in text.splitlines() and f"{job}_0.batch|RUNNING|fakenode0" in text
    assert SlurmInfoWatcher().read_info(text)[f"{job}_0"]["State"] == "RUNNING"
    queue = slurm.run("squeue", "-h", "-r", "-j", job, "-o", "%i %T %a").stdout.split("\n")
    assert f"{job}_0 RUNNING 0" in queue and f"{job}_2 PENDING 2" in queue
    slurm.run("scancel", job)
    slurm.wait([job], timeout_s=15)
    text = slurm.run("sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", job).stdout
    assert text.splitlines() == [f"{job}_{i}|CANCELLED by {os.getuid()}" for i in range(3)]


@pytest.mark.slow
def test_kill_cancel_requeue_and_refusals(slurm):
    killed = sbatch(slurm, "#!/bin/bash\nsleep 30\n")
    cancelled = sbatch(slurm, "#!/bin/bash\nsleep 30\n")
    requeued = sbatch(slurm, "#!/bin/bash\n#SBATCH --output=rq.out --open-mode=append\n"
                      "echo start $SLURM_RESTART_COUNT\n"
                      'if [ "$SLURM_RESTART_COUNT" = 0 ]; then scontrol requeue $SLURM_JOB_ID; sleep 30; fi\n')
    no_folder = sbatch(slurm, "#!/bin/bash\ntrue\n", "--output=missing/%j.out")
    slurm.wait_state(killed, "RUNNING")
    slurm.kill(killed)
    slurm.wait_state(cancelled, "RUNNING")
    slurm.run("scancel", cancelled)
    tasks = {t.job_id: t for t in slurm.wait(timeout_s=30)}
    assert (tasks[killed].state, tasks[killed].exit_code) == ("FAILED", "0:9")
    assert tasks[cancelled].state == "CANCELLED"
    assert (tasks[requeued].state, tasks[requeued].restarts) == ("COMPLETED", 1)
    assert [a["state"] for a in tasks[requeued].attempts] == ["REQUEUED", "COMPLETED"]
    assert Path("rq.out").read_text() == "start 0\nstart 1\n"
    assert tasks[no_folder].state == "FAILED" and "missing" in tasks[no_folder].reason
    # a finished task can be requeued too: it runs again
    slurm.run("scontrol", "requeue", cancelled)
    assert slurm.wait_state(cancelled, "RUNNING").restarts == 1
    slurm.run("scancel", cancelled)

    Path("s.sh").write_text("#!/bin/bash\ntrue\n")
    for args, message in ((["--cpus_per_task=2"], "unrecognized option '--cpus_per_task'"),
                          (["--dependency=afterok:1"], "--dependency is not emulated"),
                          (["--array=0-3%0"], "Invalid job array specification")):
        res = slurm.run("sbatch", *args, "s.sh", check=False)
        assert res.returncode == 1 and message in res.stderr, (args, res.stderr)
    Path("nobang.sh").write_text("true\n")
    assert "does not look like a batch script" in slurm.run("sbatch", "nobang.sh", check=False).stderr


@pytest.mark.slow
@pytest.mark.serial
def test_time_limit_sends_the_signal_first_then_times_out(tmp_path):
    with FakeSlurm(tmp_path / "state", minute_s=2, kill_wait_s=0.5) as slurm:  # --time=1 lasts 2 s
        job = sbatch(slurm, "#!/bin/bash\n#SBATCH --time=1 --signal=B:USR1@30 --output=t.out\n"
                     "trap 'echo got USR1' USR1\nfor i in $(seq 100); do sleep 0.1; done\n")
        t = slurm.wait([job], timeout_s=20)[0]
    assert t.state == "TIMEOUT" and 1.9 < t.end - t.start < 6
    assert "got USR1" in Path("t.out").read_text()


# ---------------------------------------------------------------- submitit's SlurmExecutor through it

def executor(folder, **params):
    ex = submitit.AutoExecutor(folder, cluster="slurm")
    ex.update_parameters(timeout_min=5, **params)
    return ex


@pytest.mark.slow
@pytest.mark.serial
def test_submitit_job_array_returns_every_result_with_its_parallelism(slurm, tmp_path):
    ex = executor(tmp_path / "jobs", slurm_array_parallelism=2)
    jobs = ex.map_array(slurm_jobs.square_slowly, [1, 2, 3, 4], [0.5] * 4)
    assert [j.result() for j in jobs] == [1, 4, 9, 16]
    array = jobs[0].job_id.split("_")[0]
    assert [j.job_id for j in jobs] == [f"{array}_{i}" for i in range(4)]
    assert "#SBATCH --array=0-3%2" in jobs[0].paths.submission_file.read_text()
    assert [t.state for t in slurm.wait([array])] == ["COMPLETED"] * 4
    assert slurm.max_concurrent(array) == 2
    assert [j.get_info(mode="force")["State"] for j in jobs] == ["COMPLETED"] * 4  # submitit's sacct call


@pytest.mark.slow
@pytest.mark.serial
def test_submitit_sees_a_killed_task_fail(slurm, tmp_path, monkeypatch):
    monkeypatch.setattr(SlurmJob, "_results_timeout_s", 1)  # how long result() waits for a missing pickle
    ex = executor(tmp_path / "jobs")
    markers = [str(tmp_path / f"started-{i}") for i in range(2)]
    jobs = ex.map_array(slurm_jobs.announce_then_sleep, markers, [0, 60])
    victim = jobs[1]
    slurm.wait_state(victim.job_id, "RUNNING")
    deadline = slurm_deadline(20)
    while not Path(markers[1]).exists():  # the function itself runs: kill it mid-way
        assert deadline(), slurm.sacct()
    slurm.kill(victim.job_id)
    while not victim.done(force_check=True):
        assert deadline(), slurm.sacct()
    assert victim.state == "FAILED"
    with pytest.raises(UncompletedJobError, match="has not produced any output"):
        victim.result()
    assert jobs[0].result() == "slept"
    slurm.wait([jobs[0].job_id])
    assert jobs[0].get_info(mode="force")["State"] == "COMPLETED"
    assert slurm.task(victim.job_id).exit_code == "0:9"


@pytest.mark.slow
def test_submitit_requeues_a_checkpointable_on_the_preemption_signal(slurm, tmp_path):
    ex = executor(tmp_path / "jobs")
    jobs = ex.map_array(slurm_jobs.PreemptsItselfOnce(), [10, 11])
    results = [j.result() for j in jobs]
    assert results == [{"value": 10 + i, "attempts": 2, "job_id": jobs[i].job_id, "restart_count": "1"}
                       for i in range(2)]
    slurm.wait([j.job_id for j in jobs])  # the result pickle lands before the task's processes end
    for j in jobs:
        t = slurm.task(j.job_id)
        assert t.restarts == 1 and [a["state"] for a in t.attempts] == ["REQUEUED", "COMPLETED"]
        assert f"Requeued job {j.job_id}" in j.stdout()  # submitit ran `scontrol requeue`


@pytest.mark.slow
@pytest.mark.serial
def test_submitit_requeues_on_the_time_limits_signal(tmp_path, with_pythonpath):
    # a SLURM minute of 10 s: --time=1 and --signal=USR2@30 send USR2 5 s after the start
    with FakeSlurm(tmp_path / "state", minute_s=10, kill_wait_s=1) as slurm:
        ex = executor(tmp_path / "jobs")
        ex.update_parameters(timeout_min=1, slurm_signal_delay_s=30)
        job = ex.submit(slurm_jobs.SleepsPastTheSignal(), 3)
        assert job.result() == {"value": 3, "attempts": 2, "job_id": job.job_id, "restart_count": "1"}
        assert "#SBATCH --signal=USR2@30" in job.paths.submission_file.read_text()
        t = slurm.wait([job.job_id])[0]
    assert t.restarts == 1 and 4 < t.attempts[0]["end"] - t.attempts[0]["start"] < 9


@pytest.mark.slow
def test_leaving_the_context_stops_what_still_runs(tmp_path):
    with FakeSlurm(tmp_path / "state") as slurm:
        job = sbatch(slurm, "#!/bin/bash\nsleep 60\n")
        pid = slurm.wait_state(job, "RUNNING").pid
    assert slurm.task(job).state == "CANCELLED"
    assert fake_core.group_members(pid) == []  # its process group is gone
    assert str(BIN) not in os.environ["PATH"].split(os.pathsep)


def slurm_deadline(seconds: float):
    end = time.time() + seconds

    def ok() -> bool:
        time.sleep(0.05)
        return time.time() < end
    return ok
