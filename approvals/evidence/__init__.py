"""Evidence the gate gathers itself before the rules run (contract §6.1): lookups in the systems of
record, aggregates over its own history, and the search for the same effect already approved."""
