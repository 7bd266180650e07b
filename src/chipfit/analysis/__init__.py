"""Analysis: pure functions from measurements to findings (crossovers, limits, predictions).

Nothing here touches hardware, imports a framework, or prints; every result is a frozen value
that the report layer turns into words and plots.
"""
