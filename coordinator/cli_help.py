"""Help layout for ``coord search``: its options in named sections and a few examples
(click has no option groups; this small Command subclass renders them, so no dependency
is needed), and the budget options that search and resume share. Only cli.py uses it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from coordinator.cli_tracking import TRACKING_SECTION

_COL_MAX = 30  # click's default: a longer option name gets its help on the next line


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options by section and ends with examples.

    ``sections`` maps a title to parameter names (click's ``param.name``); a name that no
    option has is ignored, so a section may list an option added on another branch. An
    option in no section is shown under "Other options", never hidden."""

    def __init__(self, *args: Any, sections: Sequence[tuple[str, Sequence[str]]] = (),
                 examples: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = [(title, tuple(names)) for title, names in sections]
        self.examples = tuple(examples)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and param.name is not None:
                records[param.name] = record
        placed = {name for _, names in self.sections for name in names}
        groups = [(title, [records[n] for n in names if n in records]) for title, names in self.sections]
        groups.append(("Other options", [rec for name, rec in records.items() if name not in placed]))
        # one first-column width for every section (click sizes each list on its own)
        width = min(max((len(rec[0]) for rec in records.values()), default=0), _COL_MAX)
        for title, rows in groups:
            if rows:
                own = min(max(len(first) for first, _ in rows), _COL_MAX)
                with formatter.section(title):
                    formatter.write_dl(rows, col_max=_COL_MAX, col_spacing=2 + width - own)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.examples:
            with formatter.section("Examples"):
                for line in self.examples:  # verbatim: a command line must not be re-wrapped
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


def sharing_options(fn: Any) -> Any:
    """--priority and --preempt: how a search shares hosts with other searches (slot leases)."""
    fn = click.option("--preempt", is_flag=True, help="Stop lower-priority searches' trials for slots this one "
                      "waits for (built-in trials checkpoint and continue later; no retry is spent).")(fn)
    return click.option("--priority", type=click.IntRange(-1000, 1000), default=0, show_default=True,
                        help="On hosts other searches use too: a higher priority takes the slots that free up "
                        "first (equal priorities share them fairly).")(fn)


def budget_options(fn: Any) -> Any:
    """--budget-* , --goal and --hard: for coord search, and for coord resume to raise them."""
    for option in reversed([
        click.option("--budget-cost", type=click.FloatRange(min=0), help="Stop starting trials once they have "
                     "cost this much (the registry's prices; docs/usage.md 'Usage and cost')."),
        click.option("--budget-machine-hours", type=click.FloatRange(min=0),
                     help="Stop starting trials after this many slot-hours of trials (every attempt counts)."),
        click.option("--budget-gpu-hours", type=click.FloatRange(min=0),
                     help="Stop starting trials after this many GPU-hours."),
        click.option("--goal", type=float, help="Stop once a trial's first metric reaches VALUE (>= when "
                     "maximized, <= when minimized)."),
        click.option("--hard", is_flag=True, default=None, help="A budget or goal also stops the running trials "
                     "(they checkpoint; coord resume with a raised budget continues them)."),
    ]):
        fn = option(fn)
    return fn


# search --help: options by what a person is deciding; names are click's param names
# (positive_class: the option another branch adds, placed here in advance)
SEARCH_SECTIONS = [
    ("What to tune", ["models", "command", "model_type", "space", "metrics", "direction", "sampler", "seed"]),
    ("Data", ["data", "target", "task", "positive_class", "cv", "time_col", "folds"]),
    ("Budget", ["trials", "timeout", "trial_timeout", "budget_cost", "budget_machine_hours", "budget_gpu_hours",
                "goal", "hard"]),
    ("Where it runs", ["registry", "parallel", "placement", "priority", "preempt"]),
    ("Early stopping and PBT", ["pruner", "min_resource", "max_resource", "reduction_factor", "prune_threshold",
                                "pbt", "pbt_interval"]),
    ("Reliability", ["max_retries", "host_retry", "checkpoint_every"]),
    ("Output", ["run_dir", "runs_root", "name", "storage", "figure_width", "caption_prefix", "label_prefix", "quiet",
                "as_json", "notify"]),
    TRACKING_SECTION,
]
SEARCH_EXAMPLES = [
    "coord search --model xgboost",
    "coord search --model xgboost --model glm --trials 40 --pruner asha",
    "coord search --command \"python train.py\" --space space.yaml --metric val_loss",
]
