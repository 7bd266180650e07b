"""Analysis: pure functions from numbers to findings (numbers in, findings out).

crossover (who is faster where, with bootstrap CIs), roofline (predict a call from its costs
and a device's roofs), calibration (curve fits, calibrated roofs), validation (prediction
errors, leave-one-out), compare (two runs, Mann-Whitney U), scaling (efficiency of N devices),
suites (the suites and the seeds' claims as data, checked against a run), evidence + rules +
ranking (advice: the facts, the seeds' rules, the ranking). Nothing here measures, traces or
prints: it imports nothing from backends, discovery, execute or pipelines (tested in
tests/unit/test_layering.py). The pipelines gather the numbers; the report layer renders the
findings.
"""
