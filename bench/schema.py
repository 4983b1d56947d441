"""The run folder's schema: every file name, every CSV column and result field with its unit, and
the run statuses. Every writer (bench) and every reader (reports) imports it from here, so adding
a column is one line in this file.

    RUN/plan.json, RUN/environment.json, RUN/summary.csv
    RUN/<method>/<env>/seed<k>/{config.json, progress.csv, evals.csv, power.csv,
                                result.json, emissions.csv, checkpoint.pt}
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# ---- file names
PLAN = "plan.json"
ENVIRONMENT = "environment.json"
SUMMARY = "summary.csv"
CONFIG = "config.json"
PROGRESS = "progress.csv"
EVALS = "evals.csv"
RESULT = "result.json"
POWER = "power.csv"
EMISSIONS = "emissions.csv"  # written by CodeCarbon itself; parsed by column name
SEED_DIR_PREFIX = "seed"
MACHINE_ENERGY = "machine_energy.json"  # a local sweep of runs side by side (bench.run.machine_energy)
IDLE_BASELINE = "idle_baseline.json"  # the idle power such a sweep measured before its runs (bench.run.idle)


class Status(str, Enum):
    """A run's state. result.json holds the first three; summary.csv adds the others for runs
    whose result.json is absent (running, pending) or unreadable (corrupt)."""

    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    RUNNING = "running"
    PENDING = "pending"
    CORRUPT = "corrupt"

    def __str__(self) -> str:
        return self.value


FINAL_STATUSES = (Status.COMPLETE, Status.INTERRUPTED, Status.FAILED)


@dataclass(frozen=True)
class Field:
    """One CSV column or result field: its name, unit ('' for none) and kind."""

    name: str
    unit: str = ""
    kind: str = "float"  # float | int | str | bool
    doc: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind in ("float", "int")


def _names(fields: tuple[Field, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields)


# ---- progress.csv: one row every log_every env steps
PROGRESS_FIELDS = (
    Field("step", "env steps", "int", "env steps done so far by all ranks together"),
    Field("wall_s", "s", doc="seconds of training since the run started (pauses excluded)"),
    Field("episodes", "", "int", "finished training episodes, all ranks"),
    Field("train_return", "", doc="return of the last finished training episode"),
    Field("sps", "env steps/s", doc="env steps per second since the previous row"),
    Field("updates", "", "int", "TD3 gradient steps so far"),
    Field("loss_q", "", doc="twin-critic loss of the last update"),
    Field("loss_pi", "", doc="actor loss of the last policy update"),
    Field("energy_j", "J", doc="cumulative measured (or estimated) energy"),
)

# ---- evals.csv: one row per evaluation
EVAL_FIELDS = (
    Field("step", "env steps", "int"),
    Field("wall_s", "s"),
    Field("return_mean", "", doc="mean return of the deterministic evaluation episodes"),
    Field("return_std", ""),
    Field("episodes", "", "int"),
    Field("energy_j", "J", doc="cumulative energy at the evaluation's end"),
)

# ---- power.csv: the sampler's trace, one row per device per sample
POWER_FIELDS = (
    Field("t_s", "s", doc="seconds since the meter started (continues across a resume)"),
    Field("device", "", "str", doc="gpu<index>, cpu-package-<n>, ram-dram-<n> or cpu (the estimate)"),
    Field("power_w", "W"),
    Field("energy_j", "J", doc="cumulative energy of this device"),
    Field("source", "", "str", doc="nvml-counter, nvml-sampled, rapl or estimate"),
    Field("estimated", "", "bool"),
    # the segment columns came later: a power.csv of the six columns above still reads (segment empty)
    Field("segment", "", "int", doc="0 for the first process that trained the run, +1 for each resume"),
    Field("segment_start_s", "s", doc="t_s at which this segment's meter started (the checkpoint's wall_s)"),
)
POWER_COLUMNS_BEFORE_SEGMENTS = ("t_s", "device", "power_w", "energy_j", "source", "estimated")

# ---- result.json of one run (and its row of summary.csv)
RUN_FIELDS = (
    Field("method", kind="str"), Field("env", kind="str"), Field("seed", kind="int"),
    Field("status", kind="str", doc="a Status"), Field("error", kind="str"),
    Field("steps", "env steps", "int"), Field("wall_s", "s"),
    Field("final_return_mean"), Field("best_return_mean"),
    Field("world_size", kind="int"), Field("backend", kind="str"), Field("precision", kind="str"),
    Field("device", kind="str"), Field("updates", kind="int"),
    Field("engine", kind="str", doc="how the spiking layers ran: native (CPU kernels) or torch"),
    Field("seed_batch", "", "int", doc="seeds trained together in the run's process (--seed-batch K); its energy "
          "fields are the process's divided by K"),
)
ENERGY_FIELDS = (
    Field("energy_j", "J", doc="gpu_energy_j + cpu_energy_j + ram_energy_j, train + eval"),
    Field("energy_source", kind="str"), Field("estimated", kind="bool", doc="any component estimated"),
    Field("avg_power_w", "W"),
    Field("gpu_energy_j", "J", doc="empty where no GPU was metered"), Field("gpu_source", kind="str"),
    Field("gpu_estimated", kind="bool"),
    Field("cpu_energy_j", "J"), Field("cpu_source", kind="str"), Field("cpu_estimated", kind="bool"),
    Field("ram_energy_j", "J", doc="RAPL dram where readable, else CodeCarbon's RAM model"),
    Field("ram_source", kind="str"), Field("ram_estimated", kind="bool"),
    Field("cpu_power_model", kind="str", doc="the CPU estimate's model (TDP and its origin); empty if measured"),
    Field("ram_power_model", kind="str", doc="the RAM estimate's model; empty if measured"),
    Field("train_energy_j", "J"), Field("eval_energy_j", "J"),
    Field("country", kind="str", doc="ISO-3 code of the grid"),
    Field("carbon_intensity_g_per_kwh", "g CO2e/kWh", doc="CodeCarbon's bundled figure for the country"),
    Field("emissions_kg", "kg CO2e", doc="energy_j / 3.6e6 x pue x carbon_intensity_g_per_kwh / 1000 "
          "(bench.energy.grid)"),
    Field("codecarbon_energy_kwh", "kWh", doc="CodeCarbon's own energy figure (cross-check)"),
    Field("codecarbon_emissions_kg", "kg CO2e", doc="CodeCarbon's own emissions figure (cross-check)"),
    Field("codecarbon_energy_ratio", "x", doc="CodeCarbon's energy / energy_j"),
    Field("foreign_cpu_share", "", doc="share of the run's CPU time used by processes outside its tree"),
    Field("foreign_gpu_processes", "", "int", doc="most other processes seen on the run's GPUs at once"),
    Field("concurrent_runs", "", "int", doc="runs of the sweep executing at once on the run's machine (--jobs)"),
    Field("attributed_share", "", doc="the run's share of the machine's busy CPU time, by which its CPU and RAM "
          "energy were attributed; empty when the run had the machine to itself"),
    Field("emissions_error", kind="str"), Field("codecarbon_error", kind="str"),
    Field("meter_errors", kind="str"),
)
# ---- spike activity of the final actor on evaluation episodes (bench.metrics.activity); result.json
# also holds the per-layer detail under "activity"
ACTIVITY_FIELDS = (
    Field("spike_rate", "", doc="spikes / neuron-timesteps over every spiking layer, encoder included"),
    Field("synops_per_action", "AC/action", doc="synaptic operations: each spike times its fan-out, per timestep"),
    Field("macs_per_action", "MAC/action", doc="multiply-accumulates on real-valued inputs (all of an MLP)"),
    Field("inference_energy_j_per_action_est", "J/action",
          doc="ESTIMATE on neuromorphic hardware: AC x 0.9 pJ + MAC x 4.6 pJ (45 nm, Horowitz 2014)"),
)
# ---- result.json fields agreed between the GPS-UP, meters and resume work, one tuple per owner so
# that each adds its own. Names (units) agreed once:
#   PHASE_FIELDS (GPS-UP): train_wall_s, eval_wall_s, other_wall_s (s); other_energy_j (J; train_energy_j
#     and eval_energy_j stay in ENERGY_FIELDS); measured_energy_share (training phase, 0-1),
#     run_measured_energy_share (whole run, 0-1); pue (x); carbon_intensity_source (str: codecarbon-country,
#     codecarbon-region, user); region (str)
#   METER_FIELDS (meters): gpu_coverage, cpu_coverage, ram_coverage (0-1, empty where not metered; resume gaps
#     count as unmetered); gpu_devices_metered (int); idle_window_s (s);
#     idle_baseline (str: run, sweep); gpu_idle_power_w, cpu_idle_power_w,
#     ram_idle_power_w (W); gpu_dynamic_energy_j, cpu_dynamic_energy_j, ram_dynamic_energy_j (J, gross minus
#     idle); gpu_counter_power_ratio (x, worst GPU's NVML counter energy / integrated power); meter_verdict
#     (str: measured, partly estimated, estimated)
#   RESUME_FIELDS (resume): log_rows_dropped (str, file:steps list); unmetered_s (s, gaps between segments
#     of the power trace)
PHASE_FIELDS: tuple[Field, ...] = (
    Field("train_wall_s", "s", doc="training: env steps, acting, updates, replay (spikerl.phases)"),
    Field("eval_wall_s", "s", doc="evaluation episodes"),
    Field("other_wall_s", "s", doc="start-up after the meters started, checkpoints, the run's end; "
          "wall_s = train + eval + other"),
    Field("other_energy_j", "J", doc="energy of the other phase; energy_j = train + eval + other"),
    Field("measured_energy_share", "", doc="training phase: the part of its energy from counters (NVML, RAPL, "
          "amdsmi; components not estimated), 0-1; the run's component split (the meter splits phases, not "
          "components by phase)"),
    Field("run_measured_energy_share", "", doc="the same over the whole run, 0-1"),
    Field("pue", "x", doc="facility overhead (--pue, 1.0-3.0): emissions use energy_j x pue"),
    Field("carbon_intensity_source", kind="str", doc="codecarbon-country, codecarbon-region or user"),
    Field("region", kind="str", doc="the --region whose intensity was used; empty for a country's"),
    Field("batch_size", "", "int", doc="TD3 minibatch size: part of the training work GPS-UP pairs on"),
    Field("eval_every", "env steps", "int", doc="evaluation interval: changes run-phase GPS-UP only"),
    Field("eval_episodes", "", "int", doc="episodes per evaluation: changes run-phase GPS-UP only"),
    Field("seed_batch_unit", kind="str", doc="the seeds of the run's seed batch, '0+1+2' (empty for a lone "
          "run): one energy measurement, the bootstrap's unit"),
)
METER_FIELDS: tuple[Field, ...] = (
    Field("gpu_coverage", "", doc="metered GPU device-seconds / window device-seconds over every segment; "
          "empty where no GPU was metered"),
    Field("cpu_coverage", "", doc="metered / window seconds of the CPU energy source(s); empty where not metered"),
    Field("ram_coverage", "", doc="metered / window seconds of the RAM energy source(s); empty where not metered"),
    Field("gpu_devices_metered", "", "int", doc="distinct GPUs (by UUID) metered over all ranks"),
    Field("idle_window_s", "s", doc="the idle baseline's length before training (per segment, summed); empty: none"),
    Field("idle_baseline", kind="str", doc="where the idle power came from: run (its own window before training) "
          "or sweep (one window before a local sweep's runs side by side, RUN/idle_baseline.json)"),
    Field("gpu_idle_power_w", "W", doc="the GPUs' power over the idle baseline"),
    Field("cpu_idle_power_w", "W", doc="the CPU energy source's power over the idle baseline"),
    Field("ram_idle_power_w", "W", doc="the RAM energy source's power over the idle baseline"),
    Field("gpu_dynamic_energy_j", "J", doc="gpu_energy_j minus idle power x metered time"),
    Field("cpu_dynamic_energy_j", "J", doc="cpu_energy_j minus idle power x metered time (x allocated share "
          "when attributed)"),
    Field("ram_dynamic_energy_j", "J", doc="ram_energy_j minus idle power x metered time (likewise)"),
    Field("gpu_counter_power_ratio", "x", doc="the worst GPU's NVML counter energy / integrated power samples "
          "over the same reads; beyond 5 % from 1 is flagged in meter_errors"),
    Field("meter_verdict", kind="str", doc="measured, partly estimated or estimated (bench.energy.coverage)"),
    Field("unattributed_j", "J", doc="runs side by side: the machine's CPU+RAM energy / concurrent_runs minus what "
          "this run was charged; summed over the runs, the energy no run was charged (bench.energy.attribution)"),
)
RESUME_FIELDS: tuple[Field, ...] = (
    Field("log_rows_dropped", kind="str", doc="rows a resume dropped from damaged logs: file:steps (or line n "
          "where the step was unreadable), '; ' between files; empty when none (bench.run.log_repairs)"),
    Field("unmetered_s", "s", doc="seconds of the run's time base no power row covers, between the segments of "
          "a resumed run's trace (bench.energy.segments); empty when the trace is one segment"),
)

# ---- machine_energy.json: per launch of a local sweep whose runs share the machine, one window
MACHINE_ENERGY_FIELDS = (
    Field("host", kind="str"), Field("started_utc", kind="str"), Field("window_s", "s"),
    Field("cpu_source", kind="str", doc="the machine meter's CPU source (rapl, or estimate over every CPU)"),
    Field("ram_source", kind="str"), Field("estimated", kind="bool"),
    Field("machine_cpu_j", "J", doc="the machine's metered CPU energy over the window (the launcher's meter)"),
    Field("machine_ram_j", "J"), Field("machine_j", "J", doc="machine_cpu_j + machine_ram_j"),
    Field("runs_cpu_j", "J", doc="the CPU energy the window's runs were charged (their cpu_energy_j)"),
    Field("runs_ram_j", "J"), Field("runs_j", "J"),
    Field("remainder_j", "J", doc="machine_j - runs_j: energy no run was charged (unallocated cores' idle "
          "power, other processes, start-up and the gaps between runs)"),
    Field("runs_unattributed_j", "J", doc="the runs' own unattributed_j summed (the remainder over their "
          "windows only)"),
    Field("runs_missing", "", "int", doc="runs of the window without a readable charge (their J absent)"),
)
MACHINE_ENERGY_COLUMNS = _names(MACHINE_ENERGY_FIELDS)

# ---- columns summary.csv adds across runs (bench.metrics)
TARGET_FIELDS = (Field("target_return"), Field("energy_to_target_j", "J"), Field("time_to_target_s", "s"))
GPSUP_FIELDS = (Field("speedup", "x"), Field("powerup", "x"), Field("greenup", "x"),
                Field("gpsup_category", kind="int"),
                Field("gpsup_phase", kind="str", doc="train or run: the phase whose time and energy the ratios use"),
                Field("gpsup_basis", kind="str", doc="measured, model or mixed (bench.metrics.basis)"),
                Field("gpsup_note", kind="str", doc="why a run has no ratios: not comparable, partial coverage"))
EQUIVALENT_FIELDS = (Field("car_miles", "mi"), Field("tv_hours", "h"), Field("household_week_pct", "%"))

RESULT_FIELDS = RUN_FIELDS + ENERGY_FIELDS + PHASE_FIELDS + METER_FIELDS + RESUME_FIELDS + ACTIVITY_FIELDS
SUMMARY_FIELDS = RESULT_FIELDS + GPSUP_FIELDS + TARGET_FIELDS + EQUIVALENT_FIELDS

PROGRESS_COLUMNS = _names(PROGRESS_FIELDS)
EVAL_COLUMNS = _names(EVAL_FIELDS)
POWER_COLUMNS = _names(POWER_FIELDS)
RESULT_COLUMNS = _names(RESULT_FIELDS)
ENERGY_COLUMNS = _names(ENERGY_FIELDS)
METER_COLUMNS = _names(METER_FIELDS)
SUMMARY_COLUMNS = _names(SUMMARY_FIELDS)
NUMERIC_SUMMARY_COLUMNS = tuple(f.name for f in SUMMARY_FIELDS if f.numeric and f.name != "seed")
UNITS = {f.name: f.unit for f in SUMMARY_FIELDS}

# The columns a reader cannot do without, per CSV.
REQUIRED_COLUMNS = {
    PROGRESS: ("step", "wall_s"),
    EVALS: ("step", "return_mean"),
    POWER: ("t_s", "device", "power_w"),
}
