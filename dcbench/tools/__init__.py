"""Commands around the benchmark: ``dcbench new-method`` (the plugin scaffold and its templates)
and ``dcbench import`` (sets released by other projects)."""
