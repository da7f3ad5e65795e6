"""What a condensation method is and how the host runs one: the contract (``Method``, its config
and context), named random streams, synthetic sets, checkpoints inside a cell, and ``condense``."""
