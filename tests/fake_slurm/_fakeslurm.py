"""A fake SLURM for tests: `sbatch`, `srun`, `sacct`, `squeue`, `scontrol` and `scancel` that run every
job on this machine. Standard library only: the commands run under whichever python3 is first on PATH.

State lives in $FAKE_SLURM_STATE (required): `next_id`, and per job `jobs/<id>.json` (the job and its
tasks), `jobs/<id>.sh` (the script as submitted: SLURM copies it too) and `jobs/<id>.log` (its supervisor's
own log). Every change happens under one flock (`lock`) and is written atomically (temporary file, rename).

What is emulated, as real SLURM does it:

- `sbatch [--parsable] [options] script [args]`: options from the command line override `#SBATCH` lines
  (read until the first line that is neither blank nor a comment). An unknown option is refused, as by the
  real sbatch; options that would need a scheduler (--dependency, --begin, --hold, --wait, ...) are refused
  with "not emulated". Prints `Submitted batch job N` (`N` with --parsable) and starts a detached supervisor
  that runs the tasks: an array `--array=0-7%2` gets task ids N_0..N_7, at most 2 running at once, in index
  order. Each task runs the copied script (through its #! line) in its own process group (session), in
  the submit folder (or --chdir), with the caller's environment (--export=ALL; NONE and lists too) and
  SLURM_JOB_ID (unique per task: N + position in the array), SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID (and
  _COUNT/_MIN/_MAX/_STEP), SLURM_JOB_NAME, SLURM_JOB_NODELIST=fakenode0, SLURM_JOB_NUM_NODES, SLURM_NNODES,
  SLURM_NTASKS, SLURM_NODEID/PROCID/LOCALID=0, SLURM_RESTART_COUNT, SLURM_SUBMIT_DIR, SLURM_OPEN_MODE,
  SLURMD_NODENAME, SLURM_CPUS_PER_TASK, SLURM_JOB_PARTITION where given. Output files take %A %a %j %x %u
  %N %% (with zero padding, e.g. %4a); a missing output folder fails the task, as on a real cluster.
- Task states: PENDING, RUNNING, COMPLETED (exit 0), FAILED (non-zero exit or killed by a signal),
  CANCELLED (scancel), TIMEOUT (past --time), REQUEUED (being requeued), COMPLETING (the batch shell ended
  and leftover processes of its group are being killed: SIGTERM, then SIGKILL after $FAKE_SLURM_KILL_WAIT_S).
- `--time` and `--signal=[B:]SIG@SECONDS` are honoured on a clock scaled by $FAKE_SLURM_MINUTE_S (seconds
  per SLURM minute, default 60, read at submission): the signal goes to the job steps (the batch shell with
  B:) SECONDS before the limit, and at the limit the task is killed and ends TIMEOUT.
- `srun [options] cmd`: runs --ntasks copies (default: the job's SLURM_NTASKS) with SLURM_PROCID,
  SLURM_LOCALID, SLURM_NODEID, SLURM_STEP_ID; --output/--error take %j %A %a %t %n %N %s %x %u %%; exits
  with the highest task exit code (128+N for a task killed by signal N). Its processes are recorded as the
  task's step, for `scancel --signal`. Signals that reach srun itself are not forwarded (a signal to the
  whole group reaches the tasks anyway).
- `sacct [-j ID[,ID]]... [-o FIELDS] [--parsable2|-P|--parsable|-p] [-n] [-X]`: a header and one line per
  task (`N_4|RUNNING|fakenode0`), plus `.batch` and `.<step>` lines unless -X; never-started pending tasks
  of an array are folded into one line (`N_[2-7%2]|PENDING|None assigned`) as real sacct does. Fields:
  JobID JobIDRaw JobName State ExitCode NodeList Start End Submit Elapsed Partition NNodes NCPUS AllocCPUS
  Restarts Reason.
- `squeue [-j IDS] [-h] [-r] [-o FORMAT] [-t STATES] [-u USER|--me]`: unfinished tasks; %i %A %a %F %K %j %T
  %t %N %R %u %P %M %D %C %r %%, with widths (%.18i).
- `scontrol requeue IDS` (a running task is killed after a 1 s grace, then runs again with
  SLURM_RESTART_COUNT + 1; a finished one runs again), `scontrol show job [ID]`.
- `scancel IDS` (a pending task ends CANCELLED at once, a running one is killed and ends CANCELLED),
  `scancel --signal SIG IDS` (to the steps' processes; -b the batch shell; -f both), `-u USER`/`--me`.

IDs everywhere: N (the whole array), N_i, N_[1-3,5], or a task's own SLURM_JOB_ID.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

STATE_ENV = "FAKE_SLURM_STATE"
NODE = "fakenode0"
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")
POLL_S = 0.1
REQUEUE_GRACE_S = 1.0
MAX_ARRAY_INDEX = 1000  # real SLURM's default MaxArraySize is 1001
NOT_ARRAY_INDEX = "4294967294"  # what %a means outside an array


class SlurmError(Exception):
    """Reported as `<command>: error: <message>`, exit code 1."""


# ---------------------------------------------------------------- state on disk

def state_root() -> Path:
    value = os.environ.get(STATE_ENV)
    if not value:
        raise SlurmError(f"{STATE_ENV} is not set: this fake SLURM keeps its state there")
    root = Path(value)
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def locked(root: Path):
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load_job(root: Path, job_id: int) -> dict:
    return json.loads((root / "jobs" / f"{job_id}.json").read_text())


def find_raw(root: Path, raw_id: str) -> tuple[dict, int] | None:
    """The (job, position) of the task whose SLURM_JOB_ID is raw_id."""
    if not raw_id.isdigit():
        return None
    for job in all_jobs(root):
        for pos, t in enumerate(job["tasks"]):
            if t["raw_id"] == int(raw_id):
                return job, pos
    return None


def save_job(root: Path, job: dict) -> None:
    _atomic_write(root / "jobs" / f"{job['job_id']}.json", json.dumps(job, indent=1))


def all_jobs(root: Path) -> list[dict]:
    ids = sorted(int(p.stem) for p in (root / "jobs").glob("*.json") if p.stem.isdigit())
    return [load_job(root, i) for i in ids]


def task_name(job: dict, task: dict) -> str:
    return f"{job['job_id']}_{task['index']}" if job["array"] is not None else str(job["job_id"])


def find_tasks(root: Path, token: str) -> list[tuple[dict, int]]:
    """(job, position) of every task an id names: N, N_i, N_[spec] or a task's own SLURM_JOB_ID."""
    token = token.strip()
    m = re.fullmatch(r"(\d+)(?:_(\d+)|_\[([0-9,\-:%]+)\])?", token)
    if m is None:
        raise SlurmError(f"Invalid job id specified: {token}")
    main, index, spec = int(m.group(1)), m.group(2), m.group(3)
    path = root / "jobs" / f"{main}.json"
    if path.exists():
        job = load_job(root, main)
        if index is None and spec is None:
            return [(job, pos) for pos in range(len(job["tasks"]))]
        wanted = {int(index)} if index is not None else set(parse_array(spec)[0])
        return [(job, pos) for pos, t in enumerate(job["tasks"]) if t["index"] in wanted]
    if index is None and spec is None:  # a task's own job id
        found = find_raw(root, str(main))
        return [found] if found else []
    return []


# ---------------------------------------------------------------- processes

def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(name))
    return out


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data[data.rfind(")") + 2:].split()[0] not in ("Z", "X")
    except OSError:
        if os.path.isdir("/proc"):
            return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _killpg(pgid: int | None, sig: int) -> None:
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def _kill(pid: int | None, sig: int) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def parse_signal(text: str) -> int:
    name = text.strip().upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise SlurmError(f"Invalid signal name: {text}") from None


def _ignore_signal(signum, frame):  # noqa: ANN001 - a Python handler, so children get the default back on exec
    pass


def _shield() -> None:
    """Client commands finish what they started even if their process group is being terminated
    (a task calling `scontrol requeue` on itself is a member of the group the requeue kills)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, _ignore_signal)


# ---------------------------------------------------------------- option parsing

V, F, OPT = "value", "flag", "optional"
SBATCH_OPTIONS = {n: V for n in (
    "account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters comment constraint container "
    "container-id core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot dependency "
    "distribution error exclude export export-file extra gid gpu-bind gpu-freq gpus gpus-per-node "
    "gpus-per-socket gpus-per-task gres gres-flags hint input job-name kill-on-invalid-dep licenses mail-type "
    "mail-user mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus network nice nodefile nodelist nodes "
    "ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode output partition power "
    "prefer priority profile propagate qos reservation signal sockets-per-node switches thread-spec "
    "threads-per-core time time-min tmp tres-per-task uid wait-all-nodes wckey wrap").split()}
SBATCH_OPTIONS.update({n: F for n in (
    "contiguous hold ignore-pbs no-requeue overcommit oversubscribe parsable quiet reboot requeue spread-job "
    "test-only use-min-nodes verbose wait help usage version").split()})
SBATCH_OPTIONS.update({"exclusive": OPT, "get-user-env": OPT, "no-kill": OPT, "extra-node-info": OPT})
SBATCH_SHORT = {"A": "account", "a": "array", "b": "begin", "D": "chdir", "c": "cpus-per-task", "d": "dependency",
                "e": "error", "J": "job-name", "t": "time", "N": "nodes", "n": "ntasks", "o": "output",
                "p": "partition", "q": "qos", "w": "nodelist", "x": "exclude", "C": "constraint", "G": "gpus",
                "W": "wait", "H": "hold", "Q": "quiet", "v": "verbose", "k": "no-kill", "s": "oversubscribe",
                "i": "input", "M": "clusters", "L": "licenses", "S": "core-spec", "F": "nodefile",
                "B": "extra-node-info"}
SBATCH_NOT_EMULATED = ("begin", "clusters", "deadline", "dependency", "hold", "test-only", "wait", "input", "uid",
                       "gid", "container", "reboot", "help", "usage", "version")

SRUN_OPTIONS = {n: V for n in (
    "account chdir cpu-bind cpus-per-gpu cpus-per-task distribution error export gpus gpus-per-node gpus-per-task "
    "gres input job-name mem mem-per-cpu mem-per-gpu mpi nodelist nodes ntasks ntasks-per-node open-mode output "
    "partition qos signal time exclude constraint kill-on-bad-exit gpu-bind cpu-freq wait het-group").split()}
SRUN_OPTIONS.update({n: F for n in (
    "exact label overlap overcommit quiet unbuffered verbose no-kill multi-prog pty").split()})
SRUN_OPTIONS.update({"exclusive": OPT})
SRUN_SHORT = {"A": "account", "D": "chdir", "c": "cpus-per-task", "e": "error", "J": "job-name", "t": "time",
              "N": "nodes", "n": "ntasks", "o": "output", "p": "partition", "q": "qos", "w": "nodelist",
              "x": "exclude", "C": "constraint", "G": "gpus", "l": "label", "u": "unbuffered", "v": "verbose",
              "Q": "quiet", "K": "kill-on-bad-exit", "W": "wait", "i": "input", "m": "distribution"}


def parse_options(args: list[str], table: dict, shorts: dict, positional_ok: bool = True) -> tuple[dict, list[str]]:
    """getopt-style: options until the first positional argument (or `--`); returns (options, the rest)."""
    opts: dict = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return opts, args[i + 1:]
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            kind = table.get(name)
            if kind is None:
                raise SlurmError(f"unrecognized option '--{name}'")
            if kind == V and not eq:
                i += 1
                if i >= len(args):
                    raise SlurmError(f"option '--{name}' requires an argument")
                value = args[i]
            elif kind == F and eq:
                raise SlurmError(f"option '--{name}' doesn't allow an argument")
            opts[name] = value if (kind == V or eq) else True
        elif a.startswith("-") and len(a) > 1:
            name = shorts.get(a[1])
            if name is None:
                raise SlurmError(f"invalid option -- '{a[1]}'")
            if table[name] == V:
                value = a[2:]
                if not value:
                    i += 1
                    if i >= len(args):
                        raise SlurmError(f"option requires an argument -- '{a[1]}'")
                    value = args[i]
                opts[name] = value
            else:
                if len(a) > 2:
                    raise SlurmError(f"combined short options are not emulated: {a}")
                opts[name] = True
        else:
            if not positional_ok:
                raise SlurmError(f"unexpected argument {a!r}")
            return opts, args[i:]
        i += 1
    return opts, []


def parse_array(spec: str) -> tuple[list[int], int | None]:
    """'0-7%2', '1,3,5', '0-15:4' -> (sorted indices, parallelism or None)."""
    body, pct, par = spec.partition("%")
    parallelism = None
    if pct:
        if not par.isdigit() or int(par) < 1:
            raise SlurmError(f"Invalid job array specification: {spec}")
        parallelism = int(par)
    indices: set[int] = set()
    for part in body.split(","):
        rng, colon, step_text = part.partition(":")
        lo, dash, hi = rng.partition("-")
        try:
            a, b = int(lo), int(hi) if dash else int(lo)
            step = int(step_text) if colon else 1
        except ValueError:
            raise SlurmError(f"Invalid job array specification: {spec}") from None
        if a < 0 or b < a or step < 1 or b > MAX_ARRAY_INDEX:
            raise SlurmError(f"Invalid job array specification: {spec} (indices 0 to {MAX_ARRAY_INDEX})")
        indices.update(range(a, b + 1, step))
    return sorted(indices), parallelism


def parse_time(text: str) -> float | None:
    """A SLURM time limit in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; None for UNLIMITED."""
    t = text.strip()
    if t.upper() in ("UNLIMITED", "INFINITE", "-1"):
        return None
    try:
        if "-" in t:
            days_text, rest = t.split("-", 1)
            days, parts = int(days_text), [int(x) for x in rest.split(":")]
            if not 1 <= len(parts) <= 3:
                raise ValueError
            h, m, s = (parts + [0, 0])[:3]
            return float(days * 86400 + h * 3600 + m * 60 + s)
        parts = [int(x) for x in t.split(":")]
    except ValueError:
        raise SlurmError(f"Invalid time limit specification: {text}") from None
    if len(parts) == 1:
        return parts[0] * 60.0
    if len(parts) == 2:
        return parts[0] * 60.0 + parts[1]
    if len(parts) == 3:
        return parts[0] * 3600.0 + parts[1] * 60 + parts[2]
    raise SlurmError(f"Invalid time limit specification: {text}")


def parse_signal_option(text: str) -> dict:
    """--signal=[{R|B}:]SIG[@SECONDS]"""
    body, batch = text, False
    if ":" in body:
        flags, body = body.split(":", 1)
        batch = "B" in flags.upper()
    name, _, when = body.partition("@")
    try:
        before_s = int(when) if when else 60
    except ValueError:
        raise SlurmError(f"Invalid --signal specification: {text}") from None
    return {"signum": parse_signal(name), "before_s": before_s, "batch": batch}


def _positive_int(opts: dict, key: str) -> int | None:
    if key not in opts:
        return None
    text = str(opts[key]).split("-")[0]  # --nodes=2-4: the minimum
    if not text.isdigit() or int(text) < 1:
        raise SlurmError(f"invalid --{key} value: {opts[key]!r}")
    return int(text)


_PATTERN = re.compile(r"%(\d*)([%AaJjNnstuxb])")


def fill_pattern(pattern: str, values: dict[str, str]) -> str:
    """SLURM's filename patterns: %j, %A, %a, %t, ..., zero-padded with %4a, %% for a literal %."""
    def repl(m: re.Match) -> str:
        width, key = m.group(1), m.group(2)
        if key == "%":
            return "%"
        value = values.get(key)
        if value is None:
            return m.group(0)
        return value.zfill(int(width)) if width and value.isdigit() else value
    return _PATTERN.sub(repl, pattern)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return str(os.getuid())


def _export_env(spec: str, caller: dict[str, str]) -> dict[str, str]:
    items = [x for x in spec.split(",") if x]
    env = dict(caller) if not items or items[0].upper() == "ALL" else {}
    for item in items:
        if item.upper() in ("ALL", "NONE", "NIL"):
            continue
        key, eq, value = item.partition("=")
        if eq:
            env[key] = value
        elif key in caller:
            env[key] = caller[key]
    return env


# ---------------------------------------------------------------- sbatch

def sbatch(argv: list[str]) -> int:
    cli, rest = parse_options(argv, SBATCH_OPTIONS, SBATCH_SHORT)
    if "wrap" in cli:
        if rest:
            raise SlurmError("script arguments not permitted with --wrap option")
        text, script_args = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{cli['wrap']}\n", []
    elif rest:
        try:
            text = Path(rest[0]).read_text()
        except OSError as exc:
            raise SlurmError(f"Unable to open file {rest[0]}: {exc.strerror}") from None
        script_args = rest[1:]
    else:
        text, script_args = sys.stdin.read(), []
    if not text.startswith("#!"):
        raise SlurmError("This does not look like a batch script.  The first line must start with #! followed by "
                         "the path to an interpreter.")
    opts = {**_directives(text), **cli}
    bad = [k for k in SBATCH_NOT_EMULATED if k in opts]
    if bad:
        raise SlurmError(f"--{bad[0]} is not emulated by this fake sbatch")
    job = _new_job(opts, script_args)
    root = state_root()
    job["state_root"] = str(root.resolve())
    with locked(root):
        first = _next_ids(root, max(1, len(job["tasks"])))
        job["job_id"] = first
        for pos, t in enumerate(job["tasks"]):
            t["raw_id"] = first + pos
        script = root / "jobs" / f"{first}.sh"
        _atomic_write(script, text, 0o700)
        job["script"] = str(script)
        save_job(root, job)
        job["supervisor_pid"] = spawn_supervisor(root, first)
        save_job(root, job)
    print(first if opts.get("parsable") else f"Submitted batch job {first}", flush=True)
    return 0


def _directives(text: str) -> dict:
    opts: dict = {}
    for line in text.splitlines()[1:]:
        s = line.strip()
        if not s:
            continue
        if not s.startswith("#"):
            break
        if s.startswith("#SBATCH"):
            tokens = shlex.split(s[len("#SBATCH"):], comments=True)
            more, rest = parse_options(tokens, SBATCH_OPTIONS, SBATCH_SHORT, positional_ok=False)
            opts.update(more)
    return opts


def _next_ids(root: Path, n: int) -> int:
    path = root / "next_id"
    try:
        first = int(path.read_text())
    except (OSError, ValueError):
        first = 1000 + int.from_bytes(os.urandom(3), "big") * 10  # unique across state folders of one test session
    _atomic_write(path, str(first + n))
    return first


def _new_job(opts: dict, script_args: list[str]) -> dict:
    now = time.time()
    indices, parallelism = parse_array(str(opts["array"])) if "array" in opts else (None, None)
    open_mode = str(opts.get("open-mode", "truncate"))
    if open_mode not in ("append", "truncate"):
        raise SlurmError(f"Invalid --open-mode: {open_mode}")
    caller = dict(os.environ)
    env = _export_env(str(opts.get("export", "ALL")), caller)
    workdir = os.path.abspath(str(opts.get("chdir", os.getcwd())))
    minute_s = float(os.environ.get("FAKE_SLURM_MINUTE_S", "60"))
    limit = parse_time(str(opts["time"])) if "time" in opts else None
    nodes = _positive_int(opts, "nodes") or 1
    per_node = _positive_int(opts, "ntasks-per-node")
    ntasks = _positive_int(opts, "ntasks") or (nodes * per_node if per_node else nodes)
    default_out = "slurm-%A_%a.out" if indices is not None else "slurm-%j.out"
    return {
        "job_id": None, "name": str(opts.get("job-name", "fake-job")), "user": _user(), "script": None,
        "script_args": script_args, "workdir": workdir, "env": env, "submit": now,
        "array": str(opts["array"]) if "array" in opts else None, "parallelism": parallelism,
        "output": str(opts.get("output", default_out)), "error": str(opts["error"]) if "error" in opts else None,
        "open_mode": open_mode, "partition": opts.get("partition"),
        "nodes": nodes, "ntasks": ntasks, "ntasks_per_node": per_node,
        "cpus_per_task": _positive_int(opts, "cpus-per-task"),
        "time_limit_s": None if limit is None else limit * minute_s / 60.0,
        "signal": _scaled_signal(opts.get("signal"), minute_s),
        "kill_wait_s": float(os.environ.get("FAKE_SLURM_KILL_WAIT_S", "2")),
        "requeue_allowed": not opts.get("no-requeue"), "options": {k: v for k, v in opts.items() if k != "wrap"},
        "supervisor_pid": None,
        "tasks": [_new_task(i, now) for i in (indices if indices is not None else [None])],
    }


def _scaled_signal(text, minute_s: float) -> dict | None:  # noqa: ANN001
    if text is None:
        return None
    spec = parse_signal_option(str(text))
    spec["before_s"] = spec["before_s"] * minute_s / 60.0
    return spec


def _new_task(index: int | None, now: float) -> dict:
    return {"index": index, "raw_id": None, "state": "PENDING", "exit_code": None, "reason": None,
            "pid": None, "pgid": None, "node": None, "restarts": 0, "submit": now, "start": None, "end": None,
            "requeue_requested": False, "cancel_requested": False, "steps": [], "next_step": 0, "attempts": []}


def spawn_supervisor(root: Path, job_id: int) -> int:
    """Call with the lock held; the supervisor waits for it, then checks it is the job's supervisor."""
    log = open(root / "jobs" / f"{job_id}.log", "ab")
    try:
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "supervise", str(root), str(job_id)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=str(root),
                             start_new_session=True, close_fds=True)
    finally:
        log.close()
    return p.pid


# ---------------------------------------------------------------- the supervisor (one per sbatch)

class Attempt:
    def __init__(self, popen: subprocess.Popen, start: float):
        self.popen, self.start = popen, start
        self.rc: int | None = None
        self.reason: str | None = None  # CANCELLED, TIMEOUT, REQUEUED
        self.term_at: float | None = None  # when to send SIGTERM (a requeue waits a grace period)
        self.kill_at: float | None = None
        self.signalled = False


def supervise(root: Path, job_id: int) -> int:
    with locked(root):
        if load_job(root, job_id).get("supervisor_pid") != os.getpid():
            return 0
    running: dict[int, Attempt] = {}
    while True:
        now = time.time()
        with locked(root):
            job = load_job(root, job_id)
            before = json.dumps(job, indent=1)
            for pos in list(running):
                if _tend(job, pos, running[pos], now):
                    del running[pos]
            for pos, t in enumerate(job["tasks"]):
                if t["state"] in ("RUNNING", "COMPLETING", "REQUEUED") and pos not in running:
                    t.update(state="NODE_FAIL", end=now, reason="the fake supervisor lost this task")
            limit = job["parallelism"] or len(job["tasks"])
            for pos, t in enumerate(job["tasks"]):
                if len(running) >= limit:
                    break
                if t["state"] == "PENDING" and pos not in running:
                    attempt = _start(job, t, now)
                    if attempt is not None:
                        running[pos] = attempt
            done = not running and not any(t["state"] in ACTIVE for t in job["tasks"])
            if done:
                job["supervisor_pid"] = None
            if json.dumps(job, indent=1) != before:
                save_job(root, job)
        if done:
            return 0
        time.sleep(POLL_S)


def _slurm_env(job: dict, t: dict) -> dict[str, str]:
    env = {k: v for k, v in job["env"].items() if not k.startswith("SLURM_")}
    nodelist = NODE if job["nodes"] == 1 else f"fakenode[0-{job['nodes'] - 1}]"
    env.update({
        "SLURM_JOB_ID": str(t["raw_id"]), "SLURM_JOBID": str(t["raw_id"]), "SLURM_JOB_NAME": job["name"],
        "SLURM_JOB_USER": job["user"], "SLURM_SUBMIT_DIR": job["workdir"], "SLURM_SUBMIT_HOST": NODE,
        "SLURM_JOB_NODELIST": nodelist, "SLURM_NODELIST": nodelist, "SLURM_JOB_NUM_NODES": str(job["nodes"]),
        "SLURM_NNODES": str(job["nodes"]), "SLURM_NTASKS": str(job["ntasks"]), "SLURM_NPROCS": str(job["ntasks"]),
        "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURMD_NODENAME": NODE,
        "SLURM_CLUSTER_NAME": "fake", "SLURM_RESTART_COUNT": str(t["restarts"]),
        "SLURM_OPEN_MODE": "a" if job["open_mode"] == "append" else "t",
        STATE_ENV: job["state_root"],  # the fake's own plumbing: srun records its steps there
    })
    if job["ntasks_per_node"]:
        env["SLURM_NTASKS_PER_NODE"] = str(job["ntasks_per_node"])
    if job["cpus_per_task"]:
        env["SLURM_CPUS_PER_TASK"] = str(job["cpus_per_task"])
    if job["partition"]:
        env["SLURM_JOB_PARTITION"] = str(job["partition"])
    if job["array"] is not None:
        idx = [x["index"] for x in job["tasks"]]
        env.update({"SLURM_ARRAY_JOB_ID": str(job["job_id"]), "SLURM_ARRAY_TASK_ID": str(t["index"]),
                    "SLURM_ARRAY_TASK_COUNT": str(len(idx)), "SLURM_ARRAY_TASK_MIN": str(min(idx)),
                    "SLURM_ARRAY_TASK_MAX": str(max(idx)), "SLURM_ARRAY_TASK_STEP": _array_step(idx)})
    return env


def _array_step(idx: list[int]) -> str:
    steps = {b - a for a, b in pairwise(idx)}
    return str(steps.pop()) if len(steps) == 1 else "1"


def pattern_values(job: dict, t: dict, task_rank: str = "0", step: str = "batch", node: str = NODE) -> dict:
    is_array = job["array"] is not None
    return {"A": str(job["job_id"]), "a": str(t["index"]) if is_array else NOT_ARRAY_INDEX, "j": str(t["raw_id"]),
            "J": f"{t['raw_id']}.{step}", "x": job["name"], "u": job["user"], "N": node, "n": "0",
            "t": task_rank, "s": step, "b": str(t["index"] % 10) if is_array else "0"}


def _start(job: dict, t: dict, now: float) -> Attempt | None:
    values = pattern_values(job, t)
    mode = "ab" if job["open_mode"] == "append" else "wb"
    out_path = os.path.join(job["workdir"], fill_pattern(job["output"], values))
    err_path = os.path.join(job["workdir"], fill_pattern(job["error"], values)) if job["error"] else None
    files = []
    try:
        files.append(open(out_path, mode))
        if err_path is not None and err_path != out_path:
            files.append(open(err_path, mode))
        popen = subprocess.Popen([job["script"], *job["script_args"]], cwd=job["workdir"], env=_slurm_env(job, t),
                                 stdin=subprocess.DEVNULL, stdout=files[0], stderr=files[-1] if len(files) > 1
                                 else subprocess.STDOUT, start_new_session=True, close_fds=True)
    except OSError as exc:
        t.update(state="FAILED", exit_code="1:0", start=now, end=now, node=NODE,
                 reason=f"could not start: {exc.strerror or exc} ({exc.filename or job['script']})")
        t["attempts"].append({"start": now, "end": now, "state": "FAILED", "exit_code": "1:0"})
        return None
    finally:
        for f in files:
            f.close()
    t.update(state="RUNNING", pid=popen.pid, pgid=popen.pid, node=NODE, start=now, end=None, exit_code=None,
             reason=None, steps=[], next_step=0, requeue_requested=False, cancel_requested=False)
    return Attempt(popen, now)


def _tend(job: dict, pos: int, a: Attempt, now: float) -> bool:
    """Advance one running task; True once it has ended (its state is then final or PENDING again)."""
    t = job["tasks"][pos]
    if a.rc is None:
        a.rc = a.popen.poll()
    if a.reason is None:
        if t["cancel_requested"]:
            a.reason, a.term_at = "CANCELLED", now
        elif t["requeue_requested"]:
            a.reason, a.term_at = "REQUEUED", now + REQUEUE_GRACE_S
            t["state"] = "REQUEUED"
        elif job["time_limit_s"] is not None and now >= a.start + job["time_limit_s"]:
            a.reason, a.term_at = "TIMEOUT", now
    sig = job["signal"]
    if sig and not a.signalled and job["time_limit_s"] is not None and a.rc is None and \
            now >= a.start + job["time_limit_s"] - sig["before_s"]:
        a.signalled = True
        send_signal(t, sig["signum"], batch=sig["batch"], steps=not sig["batch"])
    if a.rc is not None and a.term_at is None:  # the batch shell ended: what is left of its group is killed
        a.term_at = now
        if t["state"] == "RUNNING":
            t["state"] = "COMPLETING"
    if a.term_at is not None and now >= a.term_at and a.kill_at is None:
        _killpg(t["pgid"], signal.SIGCONT)
        _killpg(t["pgid"], signal.SIGTERM)
        a.kill_at = now + job["kill_wait_s"]
    if a.kill_at is not None and now >= a.kill_at:
        _killpg(t["pgid"], signal.SIGKILL)
    if a.rc is None or group_members(t["pgid"]):
        return False
    _finish(t, a, now)
    return True


def _finish(t: dict, a: Attempt, now: float) -> None:
    rc = a.rc
    code = f"{rc}:0" if rc >= 0 else f"0:{-rc}"
    if a.reason == "REQUEUED" or t["requeue_requested"]:
        t["attempts"].append({"start": a.start, "end": now, "state": "REQUEUED", "exit_code": code})
        t.update(state="PENDING", restarts=t["restarts"] + 1, requeue_requested=False, pid=None, pgid=None,
                 start=None, end=None, exit_code=None, node=None)
        return
    state = a.reason if a.reason in ("CANCELLED", "TIMEOUT") else ("COMPLETED" if rc == 0 else "FAILED")
    t.update(state=state, exit_code=code, end=now)
    t["attempts"].append({"start": a.start, "end": now, "state": state, "exit_code": code})


def send_signal(t: dict, signum: int, batch: bool = False, steps: bool = True) -> None:
    if steps:
        for step in t["steps"]:
            if step.get("state") == "RUNNING":
                for pid in step["pids"]:
                    _kill(pid, signum)
    if batch:
        _kill(t["pid"], signum)


# ---------------------------------------------------------------- srun

def srun(argv: list[str]) -> int:
    opts, command = parse_options(argv, SRUN_OPTIONS, SRUN_SHORT)
    if not command:
        raise SlurmError("No command given to execute.")
    env = dict(os.environ)
    nodes = _positive_int(opts, "nodes") or int(env.get("SLURM_JOB_NUM_NODES", "1") or 1)
    per_node = _positive_int(opts, "ntasks-per-node")
    ntasks = _positive_int(opts, "ntasks") or (nodes * per_node if per_node else None) or \
        int(env.get("SLURM_NTASKS", "1") or 1)
    nodes = max(1, min(nodes, ntasks))
    per_node = -(-ntasks // nodes)
    root = Path(env[STATE_ENV]) if env.get(STATE_ENV) else None
    raw_id = env.get("SLURM_JOB_ID", "")
    step = "0"
    if root is not None and raw_id.isdigit():
        with locked(root):
            found = find_raw(root, raw_id)
            if found:
                job, pos = found
                t = job["tasks"][pos]
                step = str(t["next_step"])
                t["next_step"] += 1
                save_job(root, job)
    append = str(opts.get("open-mode", "append" if env.get("SLURM_OPEN_MODE") == "a" else "truncate")) == "append"
    values = {"j": raw_id or "0", "A": env.get("SLURM_ARRAY_JOB_ID", raw_id or "0"),
              "a": env.get("SLURM_ARRAY_TASK_ID", NOT_ARRAY_INDEX), "s": step, "J": f"{raw_id}.{step}",
              "x": env.get("SLURM_JOB_NAME", "srun"), "u": _user()}
    _shield()
    procs = []
    for rank in range(ntasks):
        node = rank // per_node
        v = {**values, "t": str(rank), "n": str(node), "N": f"fakenode{node}"}
        task_env = {**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % per_node),
                    "SLURM_NODEID": str(node), "SLURMD_NODENAME": f"fakenode{node}", "SLURM_STEP_ID": step,
                    "SLURM_STEPID": step, "SLURM_NTASKS": str(ntasks), "SLURM_NPROCS": str(ntasks),
                    "SLURM_STEP_NUM_TASKS": str(ntasks), "SLURM_STEP_NUM_NODES": str(nodes)}
        files = []
        try:
            out = err = None
            if "output" in opts:
                out = open(fill_pattern(str(opts["output"]), v), "ab" if append else "wb")
                files.append(out)
                err = out
            if "error" in opts:
                err = open(fill_pattern(str(opts["error"]), v), "ab" if append else "wb")
                files.append(err)
            procs.append(subprocess.Popen(command, env=task_env, stdout=out, stderr=err,
                                          cwd=str(opts["chdir"]) if "chdir" in opts else None))
        except OSError as exc:
            print(f"srun: error: {NODE}: task {rank}: {exc.strerror or exc}: {command[0]}", file=sys.stderr)
            procs.append(None)
        finally:
            for f in files:
                f.close()
    _record_step(root, raw_id, step, [p.pid for p in procs if p is not None], "RUNNING")
    codes = []
    for rank, p in enumerate(procs):
        rc = 2 if p is None else p.wait()
        codes.append(rc if rc >= 0 else 128 - rc)
        if rc != 0:
            print(f"srun: error: {NODE}: task {rank}: " + (f"Exited with exit code {rc}" if rc >= 0
                  else f"Killed by signal {-rc}"), file=sys.stderr)
    _record_step(root, raw_id, step, None, "COMPLETED" if not any(codes) else "FAILED", max(codes))
    return max(codes)


def _record_step(root: Path | None, raw_id: str, step: str, pids: list[int] | None, state: str,
                 rc: int | None = None) -> None:
    if root is None or not raw_id.isdigit():
        return
    with locked(root):
        found = find_raw(root, raw_id)
        if not found:
            return
        job, pos = found
        steps = job["tasks"][pos]["steps"]
        entry = next((s for s in steps if s["step"] == step), None)
        if entry is None:
            entry = {"step": step, "pids": pids or [], "start": time.time()}
            steps.append(entry)
        entry["state"] = state
        if rc is not None:
            entry["exit_code"] = f"{rc}:0"
            entry["end"] = time.time()
        save_job(root, job)


# ---------------------------------------------------------------- scancel, scontrol

def scancel(argv: list[str]) -> int:
    table = {"signal": V, "batch": F, "full": F, "user": V, "name": V, "state": V, "partition": V,
             "quiet": F, "verbose": F, "me": F, "interactive": F}
    opts, ids = parse_options(argv, table, {"s": "signal", "b": "batch", "f": "full", "u": "user", "n": "name",
                                            "t": "state", "p": "partition", "q": "quiet", "v": "verbose"})
    _shield()
    root = state_root()
    rc = 0
    with locked(root):
        targets: list[tuple[dict, int]] = []
        for token in [x for arg in ids for x in arg.split(",") if x]:
            found = find_tasks(root, token)
            if not found:
                print(f"scancel: error: Kill job error on job id {token}: Invalid job id specified", file=sys.stderr)
                rc = 1
            targets += found
        if not ids:
            if not any(k in opts for k in ("user", "me", "name", "state", "partition")):
                raise SlurmError("No job identification provided")
            targets = [(j, pos) for j in all_jobs(root) for pos in range(len(j["tasks"]))]
            if "name" in opts:
                targets = [(j, pos) for j, pos in targets if j["name"] == opts["name"]]
            if "state" in opts:
                wanted = {s.strip().upper() for s in str(opts["state"]).split(",")}
                targets = [(j, pos) for j, pos in targets if j["tasks"][pos]["state"] in wanted]
        now = time.time()
        jobs: dict[int, dict] = {}
        for job, pos in targets:
            job = jobs.setdefault(job["job_id"], job)
            t = job["tasks"][pos]
            if t["state"] not in ACTIVE:
                continue
            if "signal" in opts:
                full = bool(opts.get("full"))
                send_signal(t, parse_signal(str(opts["signal"])), batch=bool(opts.get("batch")) or full,
                            steps=not opts.get("batch") or full)
            elif t["state"] == "PENDING":
                t.update(state="CANCELLED", end=now, exit_code="0:0", reason=f"cancelled by {os.getuid()}")
                t["attempts"].append({"start": None, "end": now, "state": "CANCELLED", "exit_code": "0:0"})
            else:
                t["cancel_requested"] = True
        for job in jobs.values():
            save_job(root, job)
    return rc


def scontrol(argv: list[str]) -> int:
    if not argv:
        raise SlurmError("no command given (this fake scontrol knows: requeue, show job)")
    _shield()
    root = state_root()
    cmd, args = argv[0].lower(), argv[1:]
    if cmd == "requeue":
        ids = [x for arg in args for x in arg.split(",") if x]
        if not ids:
            raise SlurmError("requeue: no job id given")
        rc = 0
        with locked(root):
            jobs: dict[int, dict] = {}
            for token in ids:
                found = find_tasks(root, token)
                if not found:
                    print(f"Requeue of job {token} failed: Invalid job id specified", file=sys.stderr)
                    rc = 1
                for job, pos in found:
                    job = jobs.setdefault(job["job_id"], job)
                    if not job["requeue_allowed"]:
                        print(f"Requeue of job {token} failed: Requested operation is presently disabled",
                              file=sys.stderr)
                        rc = 1
                        continue
                    t = job["tasks"][pos]
                    if t["state"] in ("RUNNING", "COMPLETING"):
                        t["requeue_requested"] = True
                    elif t["state"] not in ACTIVE:  # a finished task runs again
                        t.update(state="PENDING", restarts=t["restarts"] + 1, start=None, end=None,
                                 exit_code=None, node=None, pid=None, pgid=None, reason=None)
            for job in jobs.values():
                if not pid_alive(job.get("supervisor_pid")):
                    save_job(root, job)  # the new supervisor reads the task as PENDING
                    job["supervisor_pid"] = spawn_supervisor(root, job["job_id"])
                save_job(root, job)
        return rc
    if cmd == "show" and args and args[0].lower() in ("job", "jobs", "jobid"):
        found = find_tasks(root, args[1]) if len(args) > 1 else \
            [(j, pos) for j in all_jobs(root) for pos in range(len(j["tasks"]))]
        if not found:
            raise SlurmError("Invalid job id specified")
        for job, pos in found:
            print(_show_job(job, job["tasks"][pos]))
            print()
        return 0
    raise SlurmError(f"invalid command: {' '.join(argv)} (this fake scontrol knows: requeue, show job)")


def _show_job(job: dict, t: dict) -> str:
    items = [("JobId", t["raw_id"])]
    if job["array"] is not None:
        items += [("ArrayJobId", job["job_id"]), ("ArrayTaskId", t["index"])]
    items += [("JobName", job["name"]), ("UserId", job["user"]), ("JobState", t["state"]),
              ("Reason", t["reason"] or "None"), ("Requeue", int(job["requeue_allowed"])),
              ("Restarts", t["restarts"]), ("ExitCode", t["exit_code"] or "0:0"),
              ("RunTime", _elapsed(t)), ("TimeLimit", _limit(job)), ("SubmitTime", _ts(t["submit"])),
              ("StartTime", _ts(t["start"])), ("EndTime", _ts(t["end"])), ("Partition", job["partition"] or "fake"),
              ("NodeList", t["node"] or "(null)"), ("BatchHost", t["node"] or "(null)"),
              ("NumNodes", job["nodes"]), ("NumTasks", job["ntasks"]), ("WorkDir", job["workdir"]),
              ("Command", job["script"]), ("StdOut", fill_pattern(job["output"], pattern_values(job, t)))]
    return "\n".join("   " + " ".join(f"{k}={v}" for k, v in items[i:i + 4]) for i in range(0, len(items), 4))


# ---------------------------------------------------------------- sacct, squeue

def _ts(t: float | None) -> str:
    return "Unknown" if t is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    d, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{d}-{text}" if d else text


def _elapsed(t: dict) -> str:
    if t["start"] is None:
        return "00:00:00"
    return _hms((t["end"] or time.time()) - t["start"])


def _limit(job: dict) -> str:
    return "UNLIMITED" if job["time_limit_s"] is None else _hms(job["time_limit_s"])


def _sacct_state(t: dict) -> str:
    if t["state"] == "CANCELLED":
        return f"CANCELLED by {os.getuid()}"
    return t["state"]


SACCT_FIELDS = {
    "jobid": lambda j, t, s: s["id"], "jobidraw": lambda j, t, s: s["raw"], "jobname": lambda j, t, s: s["name"],
    "state": lambda j, t, s: s["state"], "exitcode": lambda j, t, s: s["exit"],
    "nodelist": lambda j, t, s: t["node"] or "None assigned", "start": lambda j, t, s: _ts(s["start"]),
    "end": lambda j, t, s: _ts(s["end"]), "submit": lambda j, t, s: _ts(t["submit"]),
    "elapsed": lambda j, t, s: _hms(((s["end"] or time.time()) - s["start"]) if s["start"] else 0),
    "partition": lambda j, t, s: j["partition"] or "fake", "nnodes": lambda j, t, s: str(j["nodes"]),
    "ncpus": lambda j, t, s: str(j["ntasks"] * (j["cpus_per_task"] or 1)),
    "alloccpus": lambda j, t, s: str(j["ntasks"] * (j["cpus_per_task"] or 1)),
    "restarts": lambda j, t, s: str(t["restarts"]), "reason": lambda j, t, s: t["reason"] or "None",
    "timelimit": lambda j, t, s: _limit(j),
}


def sacct(argv: list[str]) -> int:
    table = {"jobs": V, "format": V, "parsable2": F, "parsable": F, "noheader": F, "allocations": F, "user": V,
             "starttime": V, "endtime": V, "state": V, "allusers": F, "brief": F, "duplicates": F, "name": V,
             "partition": V, "noconvert": F, "units": V, "delimiter": V}
    shorts = {"j": "jobs", "o": "format", "P": "parsable2", "p": "parsable", "n": "noheader", "X": "allocations",
              "u": "user", "S": "starttime", "E": "endtime", "s": "state", "a": "allusers", "b": "brief",
              "D": "duplicates", "r": "partition"}
    # -j may repeat (submitit passes one -j per job): collect them before the generic parser keeps the last
    ids: list[str] = []
    rest = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-j", "--jobs") and i + 1 < len(argv):
            ids += argv[i + 1].split(",")
            i += 2
            continue
        if a.startswith("--jobs=") or (a.startswith("-j") and len(a) > 2):
            ids += a.split("=", 1)[1].split(",") if a.startswith("--") else a[2:].split(",")
        else:
            rest.append(a)
        i += 1
    opts, extra = parse_options(rest, table, shorts, positional_ok=False)
    fields = [f for f in str(opts.get("format", "JobID,JobName,Partition,AllocCPUS,State,ExitCode")).split(",") if f]
    if opts.get("brief"):
        fields = ["JobID", "State", "ExitCode"]
    names = []
    for f in fields:
        base = f.split("%")[0]
        if base.lower() not in SACCT_FIELDS:
            raise SlurmError(f"Invalid field requested: \"{base}\"")
        names.append(base)
    root = state_root()
    with locked(root):
        if ids:
            selected: list[tuple[dict, int]] = []
            for token in ids:
                if token.strip():
                    selected += find_tasks(root, token)
        else:
            selected = [(j, pos) for j in all_jobs(root) for pos in range(len(j["tasks"]))]
    rows = _sacct_rows(selected, explicit=bool(ids), allocations=bool(opts.get("allocations")))
    table_rows = [[SACCT_FIELDS[n.lower()](job, t, s) for n in names] for job, t, s in rows]
    parsable = opts.get("parsable2") or opts.get("parsable")
    delim = str(opts.get("delimiter", "|"))
    lines = []
    if parsable:
        end = delim if opts.get("parsable") else ""
        if not opts.get("noheader"):
            lines.append(delim.join(names) + end)
        lines += [delim.join(r) + end for r in table_rows]
    else:
        widths = [max(10, len(n)) for n in names]
        if not opts.get("noheader"):
            lines.append(" ".join(n[:w].rjust(w) for n, w in zip(names, widths, strict=True)))
            lines.append(" ".join("-" * w for w in widths))
        lines += [" ".join(str(c)[:w].rjust(w) for c, w in zip(r, widths, strict=True)) for r in table_rows]
    if lines:
        print("\n".join(lines))
    return 0


def _sacct_rows(selected: list[tuple[dict, int]], explicit: bool, allocations: bool) -> list[tuple[dict, dict, dict]]:
    """(job, task, shown) per line: fresh pending array tasks folded as N_[a-b%p], then tasks and their steps."""
    rows: list[tuple[dict, dict, dict]] = []
    seen: set[tuple[int, int]] = set()
    by_job: dict[int, tuple[dict, list[int]]] = {}
    for job, pos in selected:
        if (job["job_id"], pos) not in seen:
            seen.add((job["job_id"], pos))
            by_job.setdefault(job["job_id"], (job, []))[1].append(pos)
    for job, positions in by_job.values():
        fresh = [p for p in positions if job["array"] is not None and job["tasks"][p]["state"] == "PENDING"
                 and not job["tasks"][p]["attempts"] and len(positions) > 1]
        for pos in positions:
            if pos in fresh:
                continue
            t = job["tasks"][pos]
            name = task_name(job, t)
            shown = {"id": name, "raw": str(t["raw_id"]), "name": job["name"], "state": _sacct_state(t),
                     "exit": t["exit_code"] or "0:0", "start": t["start"], "end": t["end"]}
            rows.append((job, t, shown))
            if allocations or t["start"] is None:
                continue
            batch_state = "RUNNING" if t["state"] in ("RUNNING", "REQUEUED") else _sacct_state(t)
            rows.append((job, t, {**shown, "id": f"{name}.batch", "raw": f"{t['raw_id']}.batch", "name": "batch",
                                  "state": batch_state}))
            for step in t["steps"]:
                rows.append((job, t, {**shown, "id": f"{name}.{step['step']}", "raw": f"{t['raw_id']}.{step['step']}",
                                      "name": "srun", "state": step.get("state", "RUNNING"),
                                      "exit": step.get("exit_code", "0:0"), "start": step.get("start"),
                                      "end": step.get("end")}))
        if fresh:
            t = job["tasks"][fresh[0]]
            spec = _fold([job["tasks"][p]["index"] for p in fresh])
            par = f"%{job['parallelism']}" if job["parallelism"] else ""
            rows.append((job, t, {"id": f"{job['job_id']}_[{spec}{par}]", "raw": str(job["job_id"]),
                                  "name": job["name"], "state": "PENDING", "exit": "0:0", "start": None, "end": None}))
    return rows


def _fold(indices: list[int]) -> str:
    parts, start, prev = [], None, None
    for i in sorted(indices) + [None]:
        if start is not None and (i is None or i != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ",".join(parts)


SQUEUE_SHORT_STATE = {"PENDING": "PD", "RUNNING": "R", "COMPLETING": "CG", "REQUEUED": "RQ"}


def squeue(argv: list[str]) -> int:
    table = {"jobs": V, "noheader": F, "array": F, "format": V, "states": V, "user": V, "me": F, "all": F,
             "long": F, "name": V, "partition": V, "sort": V, "iterate": V, "verbose": F}
    shorts = {"j": "jobs", "h": "noheader", "r": "array", "o": "format", "t": "states", "u": "user", "a": "all",
              "l": "long", "n": "name", "p": "partition", "S": "sort", "i": "iterate", "v": "verbose"}
    opts, extra = parse_options(argv, table, shorts, positional_ok=False)
    if "iterate" in opts:
        raise SlurmError("--iterate is not emulated by this fake squeue")
    fmt = str(opts.get("format", "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"))
    root = state_root()
    with locked(root):
        if "jobs" in opts:
            selected = [x for token in str(opts["jobs"]).split(",") if token for x in find_tasks(root, token)]
        else:
            selected = [(j, pos) for j in all_jobs(root) for pos in range(len(j["tasks"]))]
    wanted = {s.strip().upper() for s in str(opts.get("states", "")).split(",") if s.strip()}
    lines = []
    if not opts.get("noheader"):
        lines.append(_squeue_line(fmt, None, None, header=True))
    folded: dict[int, list[dict]] = {}
    for job, pos in selected:
        t = job["tasks"][pos]
        if t["state"] not in ACTIVE or (wanted and t["state"] not in wanted and "ALL" not in wanted):
            continue
        if "name" in opts and job["name"] != opts["name"]:
            continue
        if not opts.get("array") and job["array"] is not None and t["state"] == "PENDING" and not t["attempts"]:
            folded.setdefault(job["job_id"], []).append(t)
            continue
        lines.append(_squeue_line(fmt, job, {**t, "_id": task_name(job, t)}))
    for job_id, tasks in folded.items():
        job = next(j for j, _ in selected if j["job_id"] == job_id)
        par = f"%{job['parallelism']}" if job["parallelism"] else ""
        spec = _fold([t["index"] for t in tasks])
        lines.append(_squeue_line(fmt, job, {**tasks[0], "_id": f"{job_id}_[{spec}{par}]", "_index": f"[{spec}{par}]"}))
    print("\n".join(lines))
    return 0


_SQUEUE_SPEC = re.compile(r"%(\.)?(-)?(\d*)([a-zA-Z%])")
_SQUEUE_HEADERS = {"i": "JOBID", "A": "JOBID", "a": "ARRAY_TASK_ID", "F": "ARRAY_JOB_ID", "K": "ARRAY_TASK_ID",
                   "j": "NAME", "T": "STATE", "t": "ST", "N": "NODELIST", "R": "NODELIST(REASON)", "u": "USER",
                   "P": "PARTITION", "M": "TIME", "D": "NODES", "C": "CPUS", "r": "REASON", "l": "TIME_LIMIT"}


def _squeue_line(fmt: str, job: dict | None, t: dict | None, header: bool = False) -> str:
    def repl(m: re.Match) -> str:
        trunc, left, width, key = m.group(1), m.group(2), m.group(3), m.group(4)
        if key == "%":
            return "%"
        if key not in _SQUEUE_HEADERS:
            raise SlurmError(f"format %{key} is not emulated by this fake squeue")
        value = _SQUEUE_HEADERS[key] if header else _squeue_value(key, job, t)
        if width:
            w = int(width)
            value = value[:w] if trunc else value
            value = value.ljust(w) if left else value.rjust(w)
        return value
    return _SQUEUE_SPEC.sub(repl, fmt)


def _squeue_value(key: str, job: dict, t: dict) -> str:
    pending = t["state"] == "PENDING"
    is_array = job["array"] is not None
    index = t.get("_index", str(t["index"]) if is_array else "N/A")
    reason = t["reason"] or ("None" if not pending else ("JobArrayTaskLimit" if job["parallelism"] else "Priority"))
    return {
        "i": t["_id"], "A": str(t["raw_id"]) if not pending or not is_array else str(job["job_id"]),
        "a": index, "F": str(job["job_id"]), "K": index, "j": job["name"], "T": t["state"],
        "t": SQUEUE_SHORT_STATE.get(t["state"], t["state"][:2]), "N": "" if pending else (t["node"] or ""),
        "R": f"({reason})" if pending else (t["node"] or ""), "u": job["user"], "P": job["partition"] or "fake",
        "M": _elapsed(t) if not pending else "0:00", "D": str(job["nodes"]),
        "C": str(job["ntasks"] * (job["cpus_per_task"] or 1)), "r": reason, "l": _limit(job),
    }[key]


# ---------------------------------------------------------------- entry point

COMMANDS = {"sbatch": sbatch, "srun": srun, "sacct": sacct, "squeue": squeue, "scontrol": scontrol,
            "scancel": scancel}


def main(prog: str, argv: list[str]) -> int:
    try:
        return COMMANDS[prog](argv)
    except SlurmError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # the supervisor: python3 _fakeslurm.py supervise STATE JOB_ID
    if len(sys.argv) != 4 or sys.argv[1] != "supervise":
        sys.exit("usage: _fakeslurm.py supervise STATE_DIR JOB_ID")
    sys.exit(supervise(Path(sys.argv[2]), int(sys.argv[3])))
