"""The budgeted search (DESIGN §6): the training loop with REINFORCE on the edge
probabilities, data sets, and run checkpoints."""
