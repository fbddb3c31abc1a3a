"""Fitness: tasks (``MODEL@DATASET[:key=value,...]``), base networks, and the parallel evaluator with its cache."""
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.task_spec import DEFAULT_TASKS, TaskOverrides, available_tasks, build_tasks, make_task, parse_task
from prunevo.fitness.tasks import PreparedTask, Task, prepare_task

__all__ = ["DEFAULT_TASKS", "Evaluator", "FitnessResult", "PreparedTask", "Task", "TaskOverrides", "available_tasks",
           "build_tasks", "make_task", "parse_task", "prepare_task"]
