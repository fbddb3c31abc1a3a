"""The GP loop on DEAP: seeded population, double tournament (fitness + parsimony), one-point crossover
(order-stable, see ``cx_one_point``), uniform mutation under a height limit, elitism; DEAP's ``varAnd``
applies the crossover and mutation.

Randomness: DEAP's operators use Python's global ``random``; it is re-seeded from (run seed, generation)
at the start of every generation, so a run resumed from generation g's checkpoint draws exactly what the
uninterrupted run drew.
"""
from __future__ import annotations

import copy
import operator
import random
from collections import defaultdict

from deap import algorithms, base, gp, tools

from prunevo.evolve.individuals import Individual, build_pset, gen_grow, gen_half_and_half, to_deap
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.primitives import grammar
from prunevo.primitives.classic import classic_formulas
from prunevo.primitives.formula import Formula
from prunevo.pruning.criteria import FormulaCriterion
from prunevo.pruning.tp_criteria import TP_CRITERIA
from prunevo.runs.checkpoint import Scored
from prunevo.runs.config import EvolutionConfig
from prunevo.utils import derive_seed


def cx_one_point(ind1: Individual, ind2: Individual) -> tuple[Individual, Individual]:
    """DEAP's typed one-point crossover with the same ``random`` calls, but the types the two trees share are
    taken in the grammar's order: ``gp.cxOnePoint`` draws from a set of type classes, whose order follows
    their memory addresses and so changes from one process to the next (PYTHONHASHSEED does not fix it)."""
    if len(ind1) < 2 or len(ind2) < 2:
        return ind1, ind2
    where1, where2 = defaultdict(list), defaultdict(list)
    for idx, node in enumerate(ind1[1:], 1):
        where1[node.ret].append(idx)
    for idx, node in enumerate(ind2[1:], 1):
        where2[node.ret].append(idx)
    common = [t for t in grammar.TYPES if t in where1 and t in where2]
    if common:
        type_ = random.choice(common)
        slice1 = ind1.searchSubtree(random.choice(where1[type_]))
        slice2 = ind2.searchSubtree(random.choice(where2[type_]))
        ind1[slice1], ind2[slice2] = ind2[slice2], ind1[slice1]
    return ind1, ind2


def mutate(individual: Individual, expr, pset: gp.PrimitiveSetTyped, node_share: float) -> tuple[Individual]:
    """With probability ``node_share`` DEAP's ``mutNodeReplacement`` (one node becomes another of the same
    types: a norm another norm, a layer normalization another, an operand another of its type), else DEAP's
    ``mutUniform`` (a subtree regrown).  With ``node_share`` 0 no extra number is drawn, so runs saved before
    node mutation existed draw what they drew."""
    if node_share > 0 and random.random() < node_share:
        return gp.mutNodeReplacement(individual, pset)
    return gp.mutUniform(individual, expr, pset)


def make_toolbox(config: EvolutionConfig, pset: gp.PrimitiveSetTyped) -> base.Toolbox:
    toolbox = base.Toolbox()
    toolbox.register("expr_mut", gen_grow, pset=pset, min_=0, max_=2)
    toolbox.register("select", tools.selDoubleTournament, fitness_size=config.tournament_size,
                     parsimony_size=config.parsimony_size, fitness_first=True)
    # ``vary`` hands these to DEAP's varAnd.  Our crossover, not gp.cxOnePoint: DEAP's draws the shared type
    # in an order that changes between processes, so a seed would not give the same run (see cx_one_point).
    toolbox.register("mate", cx_one_point)
    toolbox.register("mutate", mutate, expr=toolbox.expr_mut, pset=pset, node_share=config.node_mutation)
    limit = gp.staticLimit(key=operator.attrgetter("height"), max_value=config.max_height)
    toolbox.decorate("mate", limit)
    toolbox.decorate("mutate", limit)
    return toolbox


# Under global allocation one ranking spans every layer, so a layer's scale sets its width: the seeds are also
# given as Torch-Pruning normalizes its importances for global pruning (each layer divided by its mean: lnorm)
# and as LAMP normalizes them (Lee et al., ICLR 2021)
GLOBAL_SEED_NORMS = ("lnorm", "lamp")


def seed_formulas(normalized: bool = False) -> list[Formula]:
    """The classic criteria, then the Torch-Pruning importances that the grammar expresses (one formula per
    distinct canonical form: tp-bn is the classic bn, tp-lamp ranks like tp-l2 within a layer); with
    ``normalized`` (global allocation), then each of them under each of ``GLOBAL_SEED_NORMS``."""
    seeds = {}
    plain = [*classic_formulas().values(),
             *(Formula.parse(s.formula, name=s.name) for s in TP_CRITERIA.values() if s.formula)]
    norms = [Formula.parse(f"{norm}({f.text})", name=f"{norm}({f.name})") for norm in GLOBAL_SEED_NORMS
             for f in plain] if normalized else []
    for formula in plain + norms:
        seeds.setdefault(formula.canonical_key, formula)
    return list(seeds.values())


def initial_population(config: EvolutionConfig, pset: gp.PrimitiveSetTyped) -> list[Individual]:
    """The classic criteria and expressible Torch-Pruning importances first (the seed paper's warm start),
    then ramped half-and-half trees."""
    random.seed(derive_seed(config.seed, "init"))
    population = []
    if config.seed_classics:
        normalized = any(t.allocation == "global" for t in config.task_list())
        population = [to_deap(f.tree, pset) for f in seed_formulas(normalized)][: config.population]
    while len(population) < config.population:
        population.append(Individual(gen_half_and_half(pset, *config.initial_heights)))
    return population


def vary(population: list[Individual], config: EvolutionConfig, toolbox: base.Toolbox,
         generation: int) -> list[Individual]:
    """One generation of selection and variation (elites are copied unchanged): DEAP's ``varAnd`` on the
    selected individuals, with the toolbox's ``mate`` and ``mutate`` (their height limits included)."""
    random.seed(derive_seed(config.seed, "generation", generation))
    elites = [copy.deepcopy(ind) for ind in tools.selBest(population, config.elitism)]
    selected = toolbox.select(population, len(population) - config.elitism)
    # varAnd clones each selected individual (a tournament may pick one several times), so none is shared
    return elites + algorithms.varAnd(selected, toolbox, config.crossover_prob, config.mutation_prob)


def redraw_repeats(population: list[Individual], evaluator: Evaluator, toolbox: base.Toolbox, tries: int) -> int:
    """Mutate again each new individual whose masks on every task equal those of a candidate evaluated
    before (or of an earlier one in this generation), up to ``tries`` times, so that the generation spends
    its fine-tunes on new selections.  Draws continue the generation's seeded stream.  Returns the number
    of redraws."""
    seen: set[str] = set()
    redrawn = 0
    for i, ind in enumerate(population):
        if ind.fitness.valid:
            continue
        for attempt in range(tries + 1):
            plan = evaluator.mask_plan(FormulaCriterion(ind.formula))
            selection = plan.selection
            if selection is None or attempt == tries or (selection not in seen and not evaluator.is_evaluated(plan)):
                break
            (ind,) = toolbox.mutate(copy.deepcopy(ind))
            del ind.fitness.values
            redrawn += 1
        population[i] = ind
        if selection is not None:
            seen.add(selection)
    return redrawn


def evaluate_population(population: list[Individual],
                        evaluator: Evaluator) -> list[tuple[Individual, Formula, FitnessResult]]:
    """Evaluate the individuals without a fitness; returns (individual, formula, result) for each."""
    todo = [ind for ind in population if not ind.fitness.valid]
    formulas = [ind.formula for ind in todo]
    results = evaluator.evaluate([FormulaCriterion(f) for f in formulas])
    for ind, result in zip(todo, results):
        ind.fitness.values = (result.fitness,)
    return list(zip(todo, formulas, results))


def snapshot(population: list[Individual]) -> list[Scored]:
    return [Scored(ind.formula.text, ind.fitness.values[0]) for ind in population]


def restore(scored: list[Scored], pset: gp.PrimitiveSetTyped) -> list[Individual]:
    population = []
    for s in scored:
        ind = to_deap(Formula.parse(s.text).tree, pset)
        ind.fitness.values = (s.fitness,)
        population.append(ind)
    return population


__all__ = ["Scored", "build_pset", "cx_one_point", "evaluate_population", "initial_population", "make_toolbox",
           "redraw_repeats", "restore", "seed_formulas", "snapshot", "vary"]
