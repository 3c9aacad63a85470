"""PromQL templates shipped with canary as the package `canary.queries`.

Each `NAME.promql` file is one template; `canary.metrics.queries` loads and renders them.
"""
