"""`--plan`: every check that needs no weights, and what the release will cost.

`checks` runs the config's checks and the parents' (configs and safetensors headers from the Hub);
`costs` turns the child's tensor list and the search subsets into bytes, parameters, memory, tokens,
FLOPs and time; `report` prints it for people.
"""
