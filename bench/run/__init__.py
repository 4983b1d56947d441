"""Running a plan: the run folder's store, the planner and runner, recorders, launchers, profiles."""
