"""Source connectors: each reads one kind of export (or live API) into the inventory."""
