"""Asset modules, one per pipeline stage; each reads inputs, calls the core, writes Delta."""
