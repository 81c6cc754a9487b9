"""What the release knows about its parents before (and without) downloading their weights.

`metadata` reads each parent's config.json and safetensors headers, from the Hub (range requests) or from a
local folder; `childmap` turns the two into the child's tensor list: which parent tensor feeds each child
tensor, with the shape the child expects, checked. `selection` says which files a pull needs. The plan
(`--plan`), the pull stage and the hybrid builder all use this one place.
"""
