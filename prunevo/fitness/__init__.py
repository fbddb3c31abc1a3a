"""Fitness: tasks, base networks, and the parallel evaluator with its cache."""
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.tasks import DEFAULT_TASKS, PreparedTask, Task, available_tasks, make_task, prepare_task

__all__ = ["DEFAULT_TASKS", "Evaluator", "FitnessResult", "PreparedTask", "Task", "available_tasks",
           "make_task", "prepare_task"]
