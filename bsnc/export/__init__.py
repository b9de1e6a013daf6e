"""From a finished search to something to ship: the pruned static `.bsn` with its weights
and plain PyTorch file, and Graphviz diagrams."""
