"""``dcbench run``: the spec, the planned cells, one cell's pipeline, the workers and executors
that run cells, and the grid that ties them to the store and the report."""
