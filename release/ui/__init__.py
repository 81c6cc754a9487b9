"""What a person meets besides the stages: the run's output (output.py), its closing summary (closing.py),
a starter config (starter.py), and the config's JSON Schema and reference page (schema.py).

May import: config, errors, run/ (stage names, atomic files). Nothing here imports the Hub client or torch.
"""
