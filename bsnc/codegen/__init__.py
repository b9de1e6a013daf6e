"""Network IR to PyTorch: the Jinja2 generator and its name sanitiser, the runtime that
generated stochastic modules import (sampling, masks, cost-proportional execution), the
loader that turns source into a module class, single architectures (active edges, pruning,
mask files), and the reference interpreter that tests hold the generated code to."""
