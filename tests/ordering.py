"""The longest tests first: pytest-xdist (``--dist loadgroup --no-loadscope-reorder``, see
scripts/test.sh) hands tests to its workers in collection order, so a long test collected
last runs alone at the end while the other workers sit idle. Sorting the longest to the front
(longest processing time first) lets the short ones fill the gaps beside them.

The figures are seconds (setup and call) measured in a full run of the suite on the 2-core
machine; only their order matters, and a test missing here keeps its place after them. An
``xdist_group`` is one unit of work (one worker runs it all): it weighs the sum of its tests."""

from __future__ import annotations

import pytest

MEASURED_S = {
    "tests/slurm/test_slurm_signal.py::test_the_signal_before_the_time_limit_checkpoints_and_requeues[pilot]": 135,
    "tests/slurm/test_slurm_signal.py::test_the_signal_before_the_time_limit_checkpoints_and_requeues"
    "[job-per-attempt]": 113,
    "tests/tracking/test_mlflow_default.py::test_the_default_search_is_tracked_to_runs_mlflow_db": 100,
    "tests/test_rerun.py::test_the_page_every_builtin_model_reruns_bit_for_bit": 83,
    "tests/test_scripts.py::test_sop_search_script_plans_searches_aggregates_and_shows_the_best": 82,
    "tests/test_ddp_search.py::test_the_pages_procs_commands_run_as_shown": 81,
    "tests/tracking/test_mlflow_server.py::test_live_tracking_to_a_server_and_its_model": 79,
    "tests/test_install.py::test_install_into_an_activated_venv_without_apt": 70,
    "tests/test_compare_docs.py::test_the_documented_commands_run": 67,
    "tests/test_ddp.py::test_sigterm_checkpoints_all_ranks_at_one_step_and_a_new_attempt_resumes": 63,
    "tests/test_checkpoints.py::test_damaged_newest_checkpoint_falls_back_to_the_previous_one": 53,
    "tests/test_static.py::test_mypy_strict_on_the_package": 52,
    "tests/test_multimodel.py::test_compare_models_line_of_the_readme_finishes": 52,
    "tests/test_compare_resume.py::test_an_interrupted_compare_resumes_with_no_job_done_twice": 47,
    "tests/test_pbt.py::test_an_exploiting_member_does_not_inherit_its_donors_best": 46,
    "tests/test_runs_registry.py::test_runs_lists_every_run_with_its_counts_best_hosts_and_times": 43,
    "tests/test_compare_e2e.py::test_every_output_is_there": 39,
    "tests/ssh/test_ssh_ddp.py::test_two_process_trial_on_an_ssh_host": 39,
    "tests/test_ddp.py::test_two_gloo_processes_train_as_one_process_does": 38,
    "tests/test_search_e2e.py::test_builtin_models_train_for_real_with_warm_workers": 37,
    "tests/ssh/test_ssh_models.py::test_three_models_on_one_host_with_fewer_slots[1]": 36,
    "tests/test_compare_resume.py::test_a_job_killed_on_its_host_is_retried_from_its_checkpoint": 34,
    "tests/test_checkpoints.py::test_preempted_trial_requeues_and_resumes_to_the_same_result[mlp-params0]": 32,
    "tests/ssh/test_ssh_resume.py::test_checkpoint_follows_a_retried_trial_to_another_host": 32,
    "tests/ssh/test_ssh_resume.py::test_promoted_trial_moves_to_the_faster_host_with_its_checkpoint": 30,
    "tests/test_checkpoints.py::test_trial_killed_after_a_checkpoint_is_retried_from_it": 29,
    "tests/test_multimodel.py::test_several_models_on_fewer_slots_all_complete[1]": 28,
    "tests/test_compare_cli.py::test_split_folds_runs_a_job_per_fold_and_gives_the_same_comparison": 27,
    "tests/test_compare_cli.py::test_configurations_come_from_a_searchs_best_trials": 27,
    "tests/test_compare_cli.py::test_every_job_is_one_trial_and_every_output_is_written": 26,
    "tests/tracking/test_mlflow_sync.py::test_trackers_opening_a_new_sqlite_store_at_once_leave_it_working": 26,
    "tests/tracking/test_mlflow_server.py::test_the_server_killed_mid_search_then_sync_completes_it": 26,
    "tests/ssh/test_ssh_search.py::test_warm_trial_survives_a_stalled_connection": 26,
    "tests/slurm/test_slurm_search.py::test_scontrol_requeue_resumes_the_builtin_model_from_its_checkpoint": 26,
    "tests/test_checkpoints.py::test_a_checkpoint_of_other_parameters_is_never_loaded": 24,
    "tests/test_ddp.py::test_a_prune_request_stops_every_rank_at_the_same_step": 23,
    "tests/test_compare_job.py::test_sigterm_checkpoints_and_asks_to_be_requeued": 23,
    "tests/tracking/test_mlflow_sync.py::test_a_live_search_leaves_a_parent_and_a_child_per_trial": 22,
    "tests/test_ddp.py::test_sigkill_of_the_group_leaves_no_rank_behind": 22,
    "tests/test_checkpoints.py::test_preempted_trial_requeues_and_resumes_to_the_same_result"
    "[random_forest-params2]": 22,
    "tests/resume/test_interrupt_resume.py::test_interrupted_builtin_trials_finish_after_resume_without_spending"
    "_a_retry[2]": 22,
    "tests/resume/test_interrupt_resume.py::test_interrupted_builtin_trials_finish_after_resume_without_spending"
    "_a_retry[15]": 22,
    "tests/test_compare_job.py::test_jobs_split_by_fold_join_into_the_whole_run": 21,
    "tests/slurm/test_slurm_ddp.py::test_a_two_process_trial_is_one_slurm_job": 21,
    "tests/test_scripts.py::test_the_dissertation_makefile_rebuilds_every_table_without_training": 19,
    "tests/test_examples.py::test_the_example_script_line_runs_and_prunes": 18,
    "tests/test_pbt.py::test_pbt_exploits_and_explores_with_lineage": 17,
    "tests/test_cli_help.py::test_ctrl_c_says_interrupted_and_prints_the_exact_resume_command": 17,
    "tests/kube/test_kube_search.py::test_a_builtin_model_evicted_mid_training_resumes_from_its_own_checkpoint": 17,
}


def _scope(item: pytest.Item) -> str:
    """The unit xdist schedules: the test's xdist_group, else the test itself."""
    group = item.get_closest_marker("xdist_group")
    if group is not None:
        return "@" + str(group.args[0] if group.args else group.kwargs.get("name", ""))
    return item.nodeid.split("@", 1)[0]


def longest_first(items: list[pytest.Item]) -> None:
    weight: dict[str, float] = {}
    for item in items:
        scope = _scope(item)
        weight[scope] = weight.get(scope, 0) + MEASURED_S.get(item.nodeid.split("@", 1)[0], 0)
    items.sort(key=lambda item: -weight[_scope(item)])  # stable: the rest keep collection order
