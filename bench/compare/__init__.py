"""`spikerl-bench compare BASE NEW`: the noise-aware regression gate for CI.

load        one side from a run folder, a summary.csv or a JSON export (validated)
config_diff which settings of BASE and NEW differ (a comparison must isolate the code)
noise       bootstrap intervals: ratio of medians of per-window rates, over windows and repeats
rules       the metrics, the parsed --fail-on rules and their verdicts
gate        pairing runs, estimating every change, the report and its exit code
render      terminal table, markdown summary, github-action-benchmark JSON
"""
