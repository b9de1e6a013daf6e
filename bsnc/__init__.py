"""bsnc: Budgeted Super Networks compiler."""
