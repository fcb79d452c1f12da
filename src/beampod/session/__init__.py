"""The interactive session (bsui): RunEngine, namespace, shell, one-shot plans."""

from beampod.session._db import LazyCatalog
from beampod.session._engine import make_run_engine, pin_to_runengine_cpus
from beampod.session._namespace import (
    build_namespace,
    has_display,
    make_best_effort_callback,
    prepare_instrument,
)
from beampod.session._plots import plot_run, plots_dir
from beampod.session._shell import (
    REFUSED_BEFORE_RUN,
    load_ipython_extension,
    run_code,
    run_plan_expression,
    run_shell,
    wait_for_connection,
)

__all__ = [
    "REFUSED_BEFORE_RUN",
    "LazyCatalog",
    "build_namespace",
    "has_display",
    "load_ipython_extension",
    "make_best_effort_callback",
    "make_run_engine",
    "pin_to_runengine_cpus",
    "plot_run",
    "plots_dir",
    "prepare_instrument",
    "run_code",
    "run_plan_expression",
    "run_shell",
    "wait_for_connection",
]
