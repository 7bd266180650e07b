"""Analysis: from measurements and costs to findings (crossovers, predictions, advice).

crossover, roofline, _hlo, compare, evidence, rules and advise are pure: frozen values in,
frozen values out. calibrate, costs, validate and predict measure or trace real programs, and
import torch or jax inside their functions. Nothing here prints; the report layer turns every
result into words and plots.
"""
